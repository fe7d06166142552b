"""The PostgreSQL store passes the shared subscriptions-and-outbox contract."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest
import pytest_asyncio
from _pg_harness import StoreFactory

from clipjobs.app.notify import Subscription
from clipjobs.domain.commands import FailJob
from clipjobs.testing import NotifyStoreContract, new_job, step
from clipjobs_postgres import PostgresEventStore
from clipjobs_postgres._schema import LATEST_VERSION


class TestPostgresNotify(NotifyStoreContract):
    @pytest_asyncio.fixture
    async def store(self, pg_store: PostgresEventStore) -> AsyncIterator[PostgresEventStore]:
        yield pg_store


@pytest.mark.asyncio
async def test_a_version_3_schema_gains_the_outbox_and_keeps_its_jobs(
    stores: StoreFactory, admin: asyncpg.Connection, schema: str
) -> None:
    """A schema at version 3 (before webhooks) migrates to 4; its jobs then fail into the outbox."""
    store = await stores()
    created = new_job(user_id="old-user")
    await store.append(created)
    await store.aclose()
    await admin.execute(
        f'DROP TABLE "{schema}".notify_subscriptions, "{schema}".notify_deliveries,'
        f' "{schema}".notify_attempts;'
        f' DROP INDEX "{schema}".jobs_media_due, "{schema}".jobs_finished,'
        f' "{schema}".jobs_newest, "{schema}".jobs_user_newest, "{schema}".jobs_stage_newest,'
        f' "{schema}".jobs_channel_newest, "{schema}".jobs_quiet;'
        f' DELETE FROM "{schema}".schema_version WHERE version > 3'
    )
    store = await stores()
    assert await store.load(created.job_id) == created.state
    sub = Subscription(
        id="sub_" + "b" * 24,
        user_id="old-user",
        url="https://hooks.example.org/",
        events=("job.failed",),
        secret="whsec_x",
        created_at=datetime.now(UTC),
    )
    await store.add_subscription(sub, limit=10)
    await store.append(step(created.state, FailJob("E", "boom", datetime.now(UTC))))
    [delivery] = await store.deliveries(sub.id)
    assert delivery.job_id == created.job_id
    versions = await admin.fetch(f'SELECT version FROM "{schema}".schema_version ORDER BY 1')
    assert [r[0] for r in versions] == list(range(1, LATEST_VERSION + 1))
