"""The PostgreSQL store passes the shared subscriptions-and-outbox contract."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio
from _pg_harness import StoreFactory

from clipjobs.testing import NotifyStoreContract, new_job
from clipjobs.testing._notify_contract import check_old_jobs_fail_into_the_outbox
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
    await check_old_jobs_fail_into_the_outbox(await stores(), created)
    versions = await admin.fetch(f'SELECT version FROM "{schema}".schema_version ORDER BY 1')
    assert [r[0] for r in versions] == list(range(1, LATEST_VERSION + 1))
