"""The PostgreSQL store passes the shared subscriptions-and-outbox contract."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from clipjobs.testing import NotifyStoreContract
from clipjobs_postgres import PostgresEventStore


class TestPostgresNotify(NotifyStoreContract):
    @pytest_asyncio.fixture
    async def store(self, pg_store: PostgresEventStore) -> AsyncIterator[PostgresEventStore]:
        yield pg_store
