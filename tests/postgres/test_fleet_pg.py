"""The fleet stream on PostgreSQL follows jobs another process runs (SPEC 10.3).

The API serves one process's store; a separate Python process, sharing only
the database, creates jobs and moves them on. Every change reaches the
admin's stream through LISTEN/NOTIFY; a user's stream carries only theirs.
"""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from _pg_harness import DSN, fresh_schema
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from _backends import scratch_pg_store, scripted_service
from clipjobs import (
    TokenAuthenticator,
)
from clipjobs_aiohttp import ApiConfig, create_app

pytestmark = pytest.mark.asyncio

ROOT, BOB = "root-pg-fleet-token", "bob-pg-fleet-token0"

#: The other process: jobs for alice and bob, each accepted, sent, then failed.
OTHER = textwrap.dedent(
    """
    import asyncio, sys
    from datetime import UTC, datetime
    from clipjobs.domain.commands import FailJob, MarkRequestSent
    from clipjobs.testing import new_job, step
    from clipjobs_postgres import PostgresEventStore

    async def main(dsn, schema):
        store = await PostgresEventStore.open(dsn, schema, max_size=2)
        try:
            for user in ("alice", "bob", "alice"):
                at = datetime.now(UTC)
                commit = new_job(at=at, user_id=user)
                await store.append(commit)
                sent = step(commit.state, MarkRequestSent(at))
                await store.append(sent)
                failed = step(sent.state, FailJob("SUNO_REJECTED", "no", at))
                await store.append(failed)
                print(user, commit.job_id, failed.state.version, flush=True)
        finally:
            await store.aclose()

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


@pytest_asyncio.fixture
async def served() -> AsyncIterator[tuple[TestClient, str]]:  # type: ignore[type-arg]
    schema = fresh_schema()
    async with scratch_pg_store(DSN, schema, max_size=4) as store:
        app = create_app(
            scripted_service(store), TokenAuthenticator({BOB: "bob"}, {ROOT: "root"}), ApiConfig()
        )
        async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
            yield client, schema


async def _open(client: TestClient, token: str) -> ClientResponse:  # type: ignore[type-arg]
    response = await client.get(
        "/api/music-clips/events", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status == 200
    assert (await response.content.readline()).startswith(b"retry:")
    return response


async def _until_final(response: ClientResponse, final: dict[str, int]) -> set[str]:
    """Read job events until each job in ``final`` was seen at its last version."""
    reached: set[str] = set()
    seen: set[str] = set()
    kind = ""
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: ") and kind == "job":
            body = json.loads(line[6:])
            seen.add(body["jobId"])
            if final.get(body["jobId"]) == body["version"]:
                reached.add(body["jobId"])
            if reached == set(final):
                break
    return seen


async def test_the_fleet_stream_follows_jobs_another_process_runs(
    served: tuple[TestClient, str],  # type: ignore[type-arg]
) -> None:
    """Jobs created and finished by another process reach the admin's stream at every
    step up to their last version; Bob's stream gets his job and nobody else's.
    """
    client, schema = served
    root = await _open(client, ROOT)
    bob = await _open(client, BOB)
    try:
        other = await asyncio.create_subprocess_exec(
            sys.executable, "-c", OTHER, DSN, schema, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await asyncio.wait_for(other.communicate(), 60)
        assert other.returncode == 0
        rows = [line.split() for line in out.decode().splitlines()]
        final = {job_id: int(version) for _, job_id, version in rows}
        seen = await asyncio.wait_for(_until_final(root, final), 20)
        assert seen == set(final)
        bobs = {job_id: int(v) for user, job_id, v in rows if user == "bob"}
        assert await asyncio.wait_for(_until_final(bob, bobs), 20) == set(bobs)
    finally:
        root.close()
        bob.close()
