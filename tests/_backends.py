"""The stores the tests (and ``bench/bench_fleet.py``) run on: SQLite always, PostgreSQL when
``CLIPJOBS_TEST_PG_DSN`` names a server (``.ci/run`` sets it), else those cases skip and say why;
and the service the API's tests put over such a store.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest

from clipjobs import (
    ChannelDefaults,
    EventStore,
    FakeClock,
    JobService,
    ServiceConfig,
    WebhookSigner,
)
from clipjobs.app.ports import Clock
from clipjobs.testing import ScriptedSuno

if TYPE_CHECKING:
    from clipjobs_postgres import PostgresEventStore

#: The PostgreSQL the ``postgres`` cases run on (unset: those cases skip).
PG_DSN = os.environ.get("CLIPJOBS_TEST_PG_DSN", "")

#: ``@pytest.fixture(params=BACKENDS)``: a test once on SQLite, once on PostgreSQL.
BACKENDS = [
    "sqlite",
    pytest.param(
        "postgres",
        marks=[
            pytest.mark.postgres,
            pytest.mark.skipif(not PG_DSN, reason="no CLIPJOBS_TEST_PG_DSN: PostgreSQL not set"),
        ],
    ),
]


@contextlib.asynccontextmanager
async def scratch_pg_store(
    dsn: str, schema: str, **options: Any
) -> AsyncIterator[PostgresEventStore]:
    """A PostgreSQL store on ``schema`` (created and migrated if new); when the block ends the
    schema is dropped, with everything in it, and the store closed.
    """
    from clipjobs_postgres import PostgresEventStore

    store = await PostgresEventStore.open(dsn, schema, **options)
    try:
        yield store
    finally:
        try:
            await store.drop_schema()
        finally:
            await store.aclose()


def scripted_service(store: EventStore, clock: Clock | None = None, **config: Any) -> JobService:
    """A ``JobService`` over ``store`` for what the API reads and writes there: Suno is scripted
    (the tests append jobs themselves), callbacks would go to https://clips.example, the clock is
    a ``FakeClock`` unless ``clock`` is given; ``config`` sets more of ``ServiceConfig``.
    """
    return JobService(
        store,
        ScriptedSuno(),
        ChannelDefaults(),
        WebhookSigner("webhook-secret-for-api-tests"),
        clock=clock or FakeClock(),
        config=ServiceConfig(callback_base_url="https://clips.example", **config),
    )
