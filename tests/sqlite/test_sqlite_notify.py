"""The SQLite store passes the shared subscriptions-and-outbox contract."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from clipjobs.testing import NotifyStoreContract
from clipjobs_sqlite import SQLiteEventStore


class TestSQLiteNotify(NotifyStoreContract):
    @pytest_asyncio.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[SQLiteEventStore]:
        async with SQLiteEventStore(tmp_path / "clipjobs.db") as store:
            yield store
