"""The SQLite store passes the shared subscriptions-and-outbox contract."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from clipjobs.testing import NotifyStoreContract, new_job
from clipjobs.testing._notify_contract import check_old_jobs_fail_into_the_outbox
from clipjobs_sqlite import SQLiteEventStore
from clipjobs_sqlite._schema import LATEST, migrate


class TestSQLiteNotify(NotifyStoreContract):
    @pytest_asyncio.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[SQLiteEventStore]:
        async with SQLiteEventStore(tmp_path / "clipjobs.db") as store:
            yield store


@pytest.mark.asyncio
async def test_a_version_2_database_gains_the_outbox_and_keeps_its_jobs(tmp_path: Path) -> None:
    """A file at schema 2 (before webhooks) migrates to 3; its jobs still fail into the outbox."""
    path = tmp_path / "v2.db"
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        assert migrate(conn, str(path), latest=2) == 0
    created = new_job(user_id="old-user")
    async with SQLiteEventStore(path) as store:
        await store.append(created)
    with contextlib.closing(sqlite3.connect(path)) as conn:  # back to what version 2 left
        conn.executescript(
            "DROP TABLE notify_subscriptions; DROP TABLE notify_deliveries;"
            " DROP TABLE notify_attempts; DROP INDEX jobs_finished;"
            " DROP INDEX jobs_newest; DROP INDEX jobs_user_newest; DROP INDEX jobs_stage_newest;"
            " DROP INDEX jobs_channel_newest; DROP INDEX jobs_quiet;"
            " DELETE FROM clipjobs_schema WHERE version > 2;"
        )
    async with SQLiteEventStore(path) as store:
        await check_old_jobs_fail_into_the_outbox(store, created)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM clipjobs_schema ORDER BY 1")]
    assert versions == list(range(1, LATEST + 1))
