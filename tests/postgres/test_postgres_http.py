"""The HTTP API on PostgreSQL when the database goes away: a clear 503, nothing half-written.

The API's store reaches the real server through a loopback proxy the test
can cut; a second store, connected directly, checks what the database holds.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from _pg_harness import DSN, StoreFactory, TcpProxy, running_proxy
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer
from attrs import define

from _backends import scripted_service
from clipjobs import (
    TokenAuthenticator,
)
from clipjobs_aiohttp import ApiConfig, create_app
from clipjobs_postgres import PostgresEventStore

pytestmark = pytest.mark.asyncio

TOKEN = "pg-http-token-0001"
USER = "alice"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


@define
class PgApi:
    client: TestClient[web.Request, web.Application]
    proxy: TcpProxy
    #: The API's store (through the proxy) and a direct one for checking.
    store: PostgresEventStore
    direct: PostgresEventStore

    async def run_once(self, channel: str) -> ClientResponse:
        return await self.client.post(
            f"/api/music-clips/channels/{channel}/runOnce", headers=HEADERS
        )

    async def get(self, job_id: str) -> ClientResponse:
        return await self.client.get(f"/api/music-clips/jobs/{job_id}", headers=HEADERS)


@pytest_asyncio.fixture
async def api(stores: StoreFactory) -> AsyncIterator[PgApi]:
    async with running_proxy(DSN) as proxy:
        store = await stores(proxy.dsn(DSN), connect_timeout_s=2.0, reconnect_backoff_s=(0.05, 0.2))
        direct = await stores()
        app = create_app(scripted_service(store), TokenAuthenticator({TOKEN: USER}), ApiConfig())
        async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
            yield PgApi(client, proxy, store, direct)


async def _unavailable(response: ClientResponse) -> dict[str, Any]:
    assert response.status == 503, await response.text()
    assert response.headers["Retry-After"].isdigit()
    body: dict[str, Any] = await response.json()
    assert body["ok"] is False and body["success"] is False
    assert body["error"] == "STORE_UNAVAILABLE"
    assert "unavailable" in body["message"] and body["requestId"]
    return body


async def test_the_database_going_away_is_503_and_the_api_recovers(api: PgApi) -> None:
    """Proxy cut: GET, runOnce and readyz are 503 STORE_UNAVAILABLE; proxy back: 2xx again."""
    response = await api.run_once("ch-before")
    assert response.status == 202, await response.text()
    job_id = (await response.json())["jobId"]
    assert (await api.get(job_id)).status == 200

    await api.proxy.drop()
    await _unavailable(await api.get(job_id))
    await _unavailable(await api.run_once("ch-during"))
    ready = await api.client.get("/readyz")
    assert ready.status == 503 and (await ready.json())["error"] == "STORE_UNAVAILABLE"
    assert (await api.client.get("/healthz")).status == 200
    assert await api.direct.list_jobs(USER, "ch-during") == []

    await api.proxy.restore()
    assert (await api.client.get("/readyz")).status == 200
    again = await api.get(job_id)
    assert again.status == 200 and (await again.json())["jobId"] == job_id
    created = await api.run_once("ch-during")
    assert created.status == 202, await created.text()
    new_id = (await created.json())["jobId"]
    assert [s.job_id for s in await api.direct.list_jobs(USER, "ch-during")] == [new_id]


async def test_a_run_once_cut_off_mid_transaction_leaves_no_job(
    api: PgApi, admin: asyncpg.Connection
) -> None:
    """runOnce whose insert is waiting when the database goes: 503, and no job exists afterwards."""
    schema = api.store.schema
    counts = (
        f'SELECT (SELECT count(*) FROM "{schema}".jobs), (SELECT count(*) FROM "{schema}".events)'
    )
    before = tuple(await admin.fetchrow(counts))
    lock = admin.transaction()
    await lock.start()
    try:
        # Reads go on; the API's INSERT waits inside its transaction.
        await admin.execute(f'LOCK TABLE "{schema}".jobs IN EXCLUSIVE MODE')
        pending = asyncio.create_task(api.run_once("ch-cut"))
        while not await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
            " AND wait_event_type = 'Lock'",
            f"clipjobs:{schema}",
        ):
            await asyncio.sleep(0.01)
        await api.proxy.drop()
        await _unavailable(await pending)
    finally:
        await lock.rollback()
    # The server rolls the orphaned transaction back once it notices the client is gone.
    while await admin.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND state <> 'idle'",
        f"clipjobs:{schema}",
    ):
        await asyncio.sleep(0.01)
    assert tuple(await admin.fetchrow(counts)) == before
    assert await api.direct.list_jobs(USER, "ch-cut") == []

    await api.proxy.restore()
    response = await api.run_once("ch-cut")
    assert response.status == 202, await response.text()
    job_id = (await response.json())["jobId"]
    assert (await api.get(job_id)).status == 200
    assert [s.job_id for s in await api.direct.list_jobs(USER, "ch-cut")] == [job_id]
