"""The in-memory store passes the shared subscriptions-and-outbox contract."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from clipjobs import InMemoryEventStore
from clipjobs.testing import NotifyStoreContract


class TestInMemoryNotify(NotifyStoreContract):
    @pytest_asyncio.fixture
    async def store(self) -> AsyncIterator[InMemoryEventStore]:
        async with InMemoryEventStore() as store:
            yield store
