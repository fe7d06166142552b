"""The shared store contract against the real PostgreSQL, one schema per test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from clipjobs.testing import EventStoreContract
from clipjobs_postgres import PostgresEventStore


class TestPostgresEventStore(EventStoreContract):
    @pytest_asyncio.fixture
    async def store(self, pg_store: PostgresEventStore) -> AsyncIterator[PostgresEventStore]:
        yield pg_store
