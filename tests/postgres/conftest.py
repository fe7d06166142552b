"""PostgreSQL tests run against the server named by ``CLIPJOBS_TEST_PG_DSN``.

``.ci/run`` starts this machine's PostgreSQL and sets the variable; anywhere
else these tests skip and say why. Every test gets its own schema, dropped after.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from _pg_harness import DSN, StoreFactory, fresh_schema

from _backends import scratch_pg_store
from clipjobs_postgres import PostgresEventStore

requires_pg = pytest.mark.skipif(
    not DSN,
    reason="no PostgreSQL configured: set CLIPJOBS_TEST_PG_DSN=postgresql://user@host:port/db",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/postgres" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.postgres)
            item.add_marker(requires_pg)


@pytest_asyncio.fixture
async def pg_store() -> AsyncIterator[PostgresEventStore]:
    async with scratch_pg_store(DSN, fresh_schema(), min_size=1, max_size=4) as store:
        yield store


@pytest_asyncio.fixture
async def admin() -> AsyncIterator[asyncpg.Connection]:
    """A plain connection for what an operator would do: inspect, lock, kill backends."""
    conn = await asyncpg.connect(DSN)
    try:
        yield conn
    finally:
        await conn.close()


@pytest_asyncio.fixture
async def schema(admin: asyncpg.Connection) -> AsyncIterator[str]:
    """A fresh schema name, dropped after the test whoever created it."""
    name = fresh_schema()
    try:
        yield name
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest_asyncio.fixture
async def stores(schema: str) -> AsyncIterator[StoreFactory]:
    """Open stores on the test's schema (one pool each, as separate processes would have)."""
    opened: list[PostgresEventStore] = []

    async def open_store(dsn: str = DSN, **options: Any) -> PostgresEventStore:
        options = {"min_size": 1, "max_size": 4, **options}
        store = await PostgresEventStore.open(dsn, schema, **options)
        opened.append(store)
        return store

    try:
        yield open_store
    finally:
        for store in opened:
            await store.aclose()
