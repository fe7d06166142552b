"""GET job over SQLite reads the projection row on the event loop: as fresh and as safe as before.

``SQLiteEventStore.load`` uses a plain ``sqlite3`` connection on the loop
(no trip to the connection's thread). These tests run the real API over a real
SQLite file while a second store on the same file (another connection, as
another process would have) writes the jobs.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import pytest
import pytest_asyncio
from _http_harness import new_service
from aiohttp.test_utils import TestClient, TestServer
from attrs import define, field

from clipjobs import SystemClock, TokenAuthenticator
from clipjobs.domain.commands import FailJob, MarkRequestSent
from clipjobs.domain.errors import StoreUnavailable
from clipjobs.testing._store_contract import new_job, step
from clipjobs_aiohttp import create_app
from clipjobs_aiohttp._keys import SERVICE
from clipjobs_sqlite import SQLiteEventStore
from clipjobs_sqlite._aio import on_thread
from clipjobs_sqlite._store import _LOAD

pytestmark = pytest.mark.asyncio

TOKEN = "fast-path-token-01"
USER = "fast-user"


@pytest_asyncio.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[TestClient[Any, Any], SQLiteEventStore]]:
    """The API over one store of ``db.sqlite``; yields its client and a second, writing store."""
    path = tmp_path / "db.sqlite"
    store = await SQLiteEventStore.open(path)
    writer = await SQLiteEventStore.open(path)
    service = new_service(store, clock=SystemClock())
    client = TestClient(TestServer(create_app(service, TokenAuthenticator({TOKEN: USER}))))
    await client.start_server()
    try:
        yield client, writer
    finally:
        await client.close()
        await writer.aclose()
        await store.aclose()


@define
class Reads:
    """The statements the store's two read connections ran, with the thread each ran on."""

    on_loop: list[tuple[int, str]] = field(factory=list)
    threaded: list[tuple[int, str]] = field(factory=list)

    def loads(self, where: list[tuple[int, str]]) -> list[int]:
        """The threads that ran ``load``'s query."""
        return [thread for thread, sql in where if sql.startswith(_LOAD.split("?")[0])]


async def _trace(store: SQLiteEventStore) -> Reads:
    """Record every statement of the store's loop connection and of its threaded reader."""
    reads = Reads()
    assert store._ldb is not None and store._rdb is not None

    def record(into: list[tuple[int, str]]) -> Any:
        return lambda sql: into.append((threading.get_ident(), sql))

    store._ldb.set_trace_callback(record(reads.on_loop))
    # sqlite3 wants its own thread to change the threaded connection.
    await on_thread(store._rdb, lambda conn: conn.set_trace_callback(record(reads.threaded)))
    return reads


def _server_store(client: TestClient[Any, Any]) -> SQLiteEventStore:
    store = client.server.app[SERVICE].store
    assert isinstance(store, SQLiteEventStore)
    return store


async def test_get_reads_the_projection_row_on_the_event_loop(
    served: tuple[TestClient[Any, Any], SQLiteEventStore],
) -> None:
    """A GET runs load's one query on the loop's own connection, in the loop's thread, and
    sends no load to the threaded reader. (This job waits for a Suno slot, so the first GET
    also reads the queue for its position: one threaded query, reused by the second GET.)
    """
    client, writer = served
    created = new_job(user_id=USER)
    await writer.append(created)
    reads = await _trace(_server_store(client))
    assert await _get(client, created.job_id) == (200, ANY)
    assert await _get(client, created.job_id, **{"If-None-Match": '"1"'}) == (304, None)
    loop_thread = threading.get_ident()
    assert reads.loads(reads.on_loop) == [loop_thread, loop_thread]
    assert reads.loads(reads.threaded) == []
    assert len(reads.threaded) <= 1, reads.threaded  # the queue snapshot, read once


async def _get(client: TestClient[Any, Any], job_id: str, **headers: str) -> tuple[int, Any]:
    response = await client.get(
        f"/api/music-clips/jobs/{job_id}", headers={"Authorization": f"Bearer {TOKEN}", **headers}
    )
    body = await response.json() if response.status == 200 else None
    return response.status, body


async def test_get_sees_every_commit_of_another_connection_at_once(
    served: tuple[TestClient[Any, Any], SQLiteEventStore],
) -> None:
    """No stale snapshot: each GET after a commit elsewhere shows that commit."""
    client, writer = served
    at = datetime.now(UTC) - timedelta(seconds=30)
    created = new_job(at=at, user_id=USER)
    job_id = created.job_id
    assert await _get(client, job_id) == (404, None)  # read before it exists
    await writer.append(created)
    status, body = await _get(client, job_id)
    assert (status, body["version"], body["stage"]) == (200, 1, "STAGE_10_REQUEST_ACCEPTED")

    sent = step(created.state, MarkRequestSent(at + timedelta(seconds=1)))
    await writer.append(sent)
    status, body = await _get(client, job_id, **{"If-None-Match": '"1"'})
    assert (status, body["version"], body["stage"]) == (200, 2, "STAGE_20_SUNO_REQUEST_SENT")
    assert (await _get(client, job_id, **{"If-None-Match": '"2"'}))[0] == 304

    failed = step(sent.state, FailJob("SUNO_ERROR", "it broke", at + timedelta(seconds=2)))
    await writer.append(failed)
    status, body = await _get(client, job_id)
    assert (status, body["version"], body["done"], body["error"]) == (200, 3, True, "it broke")


async def test_gets_leave_no_read_snapshot_open(
    served: tuple[TestClient[Any, Any], SQLiteEventStore],
) -> None:
    """After GETs, a checkpoint can still empty the whole WAL: the loop's reads all ended."""
    client, writer = served
    jobs = [new_job(user_id=USER) for _ in range(5)]
    for commit in jobs:
        await writer.append(commit)
    for commit in jobs:
        assert (await _get(client, commit.job_id))[0] == 200
    # More frames after those reads, so an open snapshot would pin the WAL.
    await writer.append(new_job(user_id=USER))
    conn = sqlite3.connect(writer.path, timeout=5)
    try:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        conn.close()
    assert busy == 0


async def test_get_falls_back_to_the_threaded_read_when_the_loop_connection_fails(
    served: tuple[TestClient[Any, Any], SQLiteEventStore],
) -> None:
    """A broken loop connection (closed under the store) costs speed, not answers."""
    client, writer = served
    created = new_job(user_id=USER)
    await writer.append(created)
    server_store = _server_store(client)
    reads = await _trace(server_store)
    loop_conn = server_store._ldb
    assert loop_conn is not None
    loop_conn.close()  # every execute on it now raises sqlite3.ProgrammingError
    status, body = await _get(client, created.job_id)
    assert (status, body["jobId"], body["version"]) == (200, created.job_id, 1)
    assert await server_store.load("job_1_nonexistent") is None
    assert len(reads.loads(reads.threaded)) == 2
    assert threading.get_ident() not in reads.loads(reads.threaded)


async def test_a_closed_store_still_refuses_to_load(tmp_path: Path) -> None:
    """After aclose, load says StoreUnavailable, as it always did (not a stale answer)."""
    store = await SQLiteEventStore.open(tmp_path / "db.sqlite")
    created = new_job()
    await store.append(created)
    assert await store.load(created.job_id) == created.state
    await store.aclose()
    with pytest.raises(StoreUnavailable):
        await store.load(created.job_id)
