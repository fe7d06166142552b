"""The in-memory store passes the shared store contract: a safe fake everywhere else."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from clipjobs import InMemoryEventStore
from clipjobs.domain.errors import StoreUnavailable
from clipjobs.testing import EventStoreContract, new_job


class TestInMemoryEventStore(EventStoreContract):
    @pytest_asyncio.fixture
    async def store(self) -> AsyncIterator[InMemoryEventStore]:
        async with InMemoryEventStore() as store:
            yield store


@pytest.mark.asyncio
async def test_closed_store_refuses_work() -> None:
    """After aclose, every call raises StoreUnavailable; aclose itself is idempotent."""
    store = InMemoryEventStore()
    await store.aclose()
    await store.aclose()
    with pytest.raises(StoreUnavailable):
        await store.append(new_job())
