"""PostgreSQL tests run against the server named by ``CLIPJOBS_TEST_PG_DSN``.

``.ci/run`` starts this machine's PostgreSQL and sets the variable; anywhere
else these tests skip and say why. Every test gets its own schema, dropped after.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from clipjobs_postgres import PostgresEventStore

DSN = os.environ.get("CLIPJOBS_TEST_PG_DSN", "")

requires_pg = pytest.mark.skipif(
    not DSN,
    reason="no PostgreSQL configured: set CLIPJOBS_TEST_PG_DSN=postgresql://user@host:port/db",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/postgres" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.postgres)
            item.add_marker(requires_pg)


def fresh_schema() -> str:
    return f"t_{secrets.token_hex(6)}"


@pytest_asyncio.fixture
async def pg_store() -> AsyncIterator[PostgresEventStore]:
    store = await PostgresEventStore.open(DSN, fresh_schema(), min_size=1, max_size=4)
    try:
        yield store
    finally:
        try:
            await store.drop_schema()
        finally:
            await store.aclose()
