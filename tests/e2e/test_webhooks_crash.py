"""Webhooks survive a SIGKILL, and two processes on PostgreSQL never send one delivery at once.

``clipjobs serve`` runs as real subprocesses (``_procs.Serve``) against
the fake Suno and a verifying receiver in this test's process.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import signal
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from _receiver import Receiver, serving
from _stack import FAKE_DEFAULTS
from aiohttp import web

from _backends import PG_DSN
from _procs import HEADERS, SUNO_KEY, Serve, free_port, process_env, run_once
from clipjobs_suno.fake import running_fake_suno

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

EVENTS = ["job.succeeded", "job.failed", "job.timed_out"]


def env(url: str, fake_url: str, db_url: str, **extra: str) -> dict[str, str]:
    return process_env(
        url,
        fake_url,
        db_url,
        CLIPJOBS_POLL_AFTER_S="0.1",
        CLIPJOBS_POLL_INTERVAL_S="0.1",
        CLIPJOBS_ONE_JOB_PER_CHANNEL="off",
        # The receiver is on 127.0.0.1; everything else about webhooks is the default.
        CLIPJOBS_NOTIFY_ALLOW_PRIVATE="on",
        **extra,
    )


async def subscribe(http: aiohttp.ClientSession, url: str, hook: str) -> dict[str, Any]:
    async with http.post(
        f"{url}/api/music-clips/subscriptions",
        json={"url": hook, "events": EVENTS},
        headers=HEADERS,
    ) as response:
        assert response.status == 201, await response.text()
        body: dict[str, Any] = await response.json()
        return body


async def start_jobs(http: aiohttp.ClientSession, urls: list[str], n: int) -> list[str]:
    return [await run_once(http, urls[i % len(urls)], f"ch{i}") for i in range(n)]


async def wait_done(http: aiohttp.ClientSession, url: str, job_ids: list[str]) -> None:
    async with asyncio.timeout(60):
        for job_id in job_ids:
            while True:
                async with http.get(
                    f"{url}/api/music-clips/jobs/{job_id}", headers=HEADERS
                ) as response:
                    if (await response.json())["done"]:
                        break
                await asyncio.sleep(0.05)


async def test_sigkill_after_the_commit_still_delivers_after_restart(tmp_path: Path) -> None:
    """Jobs finish while the receiver is down; SIGKILL at once; after a restart every
    job's event arrives, each job's tries sharing one webhook-id.
    """
    port = free_port()
    receiver = Receiver()
    async with (
        running_fake_suno("127.0.0.1", 0, api_key=SUNO_KEY, **FAKE_DEFAULTS) as (fake_url, _),
        aiohttp.ClientSession() as http,
    ):
        url = f"http://127.0.0.1:{free_port()}"
        server = Serve(env(url, fake_url, f"sqlite:///{tmp_path / 'c.db'}"), tmp_path)
        try:
            await server.start()
            sub = await subscribe(http, url, f"http://127.0.0.1:{port}/hook")
            receiver.secrets.append(sub["secret"])
            job_ids = await start_jobs(http, [url], 3)
            await wait_done(http, url, job_ids)
            assert await server.kill() == -signal.SIGKILL  # committed; not delivered
            async with serving(receiver, port):
                await server.start()
                await receiver.wait(
                    lambda: {r.body["data"]["jobId"] for r in receiver.ok()} == set(job_ids),
                    timeout=40,
                )
        finally:
            await server.ensure_dead()
    ids_per_job: dict[str, set[str]] = defaultdict(set)
    for got in receiver.received:
        ids_per_job[got.body["data"]["jobId"]].add(got.webhook_id)
    assert all(len(ids) == 1 for ids in ids_per_job.values()), ids_per_job
    assert len({next(iter(ids)) for ids in ids_per_job.values()}) == 3
    assert receiver.unverified == []


async def test_sigkill_during_an_attempt_sends_it_again_with_the_same_webhook_id(
    tmp_path: Path,
) -> None:
    """Killed while the receiver holds the first attempt: after a restart, once the dead
    process's lease runs out (CLIPJOBS_LEASE_S, here its minimum 31 s), the delivery is
    sent again with the same webhook-id and delivered: a duplicate, never a loss.
    """
    receiver = Receiver(script=["hang"])
    async with (
        running_fake_suno("127.0.0.1", 0, api_key=SUNO_KEY, **FAKE_DEFAULTS) as (fake_url, _),
        aiohttp.ClientSession() as http,
        serving(receiver) as hook,
    ):
        url = f"http://127.0.0.1:{free_port()}"
        db_url = f"sqlite:///{tmp_path / 'c.db'}"
        server = Serve(env(url, fake_url, db_url, CLIPJOBS_LEASE_S="31"), tmp_path)
        try:
            await server.start()
            sub = await subscribe(http, url, hook)
            receiver.secrets.append(sub["secret"])
            [job_id] = await start_jobs(http, [url], 1)
            await receiver.wait(lambda: len(receiver.received) == 1)  # in flight, held
            assert await server.kill() == -signal.SIGKILL
            await server.start()
            await receiver.wait(lambda: receiver.ok(), timeout=60)
        finally:
            await server.ensure_dead()
    first, second = receiver.received[0], receiver.ok()[0]
    assert first.webhook_id == second.webhook_id
    assert second.body["data"]["jobId"] == job_id and second.body["type"] == "job.succeeded"


@pytest.mark.skipif(not PG_DSN, reason="no PostgreSQL configured: set CLIPJOBS_TEST_PG_DSN")
async def test_two_processes_on_postgres_never_send_one_delivery_at_once(tmp_path: Path) -> None:
    """Two servers on one schema share the outbox: no webhook-id is ever in flight twice,
    each is answered 500 then 200 (so retries, too, go to whichever process claims them),
    and every request the receiver saw is an attempt exactly one process logged.
    """
    in_flight: Counter[str] = Counter()
    overlaps: list[str] = []
    seen: Counter[str] = Counter()
    receiver = Receiver(answer_for=lambda webhook_id: 500 if seen[webhook_id] == 1 else 200)

    async def slow(request: web.Request) -> web.StreamResponse:
        webhook_id = request.headers.get("webhook-id", "")
        in_flight[webhook_id] += 1
        if in_flight[webhook_id] > 1:
            overlaps.append(webhook_id)
        seen[webhook_id] += 1
        try:
            await asyncio.sleep(0.1)
            return await receiver.handle(request)
        finally:
            in_flight[webhook_id] -= 1

    schema = f"hooks_{secrets.token_hex(6)}"
    db_url = PG_DSN
    jobs = 12
    async with (
        running_fake_suno("127.0.0.1", 0, api_key=SUNO_KEY, **FAKE_DEFAULTS) as (fake_url, _),
        aiohttp.ClientSession() as http,
        _serving_handler(slow) as hook,
    ):
        urls = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
        servers = [
            Serve(
                env(
                    url,
                    fake_url,
                    db_url,
                    CLIPJOBS_PG_SCHEMA=schema,
                    CLIPJOBS_NOTIFY_BACKOFF_S="0.05",
                    CLIPJOBS_LOG_LEVEL="INFO",
                ),
                tmp_path,
                f"serve{n}",
            )
            for n, url in enumerate(urls)
        ]
        try:
            for server in servers:
                await server.start()
            for _ in range(2):
                sub = await subscribe(http, urls[0], hook)
                receiver.secrets.append(sub["secret"])
            job_ids = await start_jobs(http, urls, jobs)
            await receiver.wait(lambda: len(receiver.ok()) == 2 * jobs, timeout=60)
            await asyncio.sleep(0.5)  # let the last attempts be logged
        finally:
            for server in servers:
                await server.close()
            await _drop_schema(schema)
    assert overlaps == []
    assert len(seen) == 2 * jobs and set(seen.values()) == {2}
    assert {r.body["data"]["jobId"] for r in receiver.ok()} == set(job_ids)
    logged = [
        len(re.findall(r"webhook msg_\w+ job\.\w+ job \S+ attempt", _log(tmp_path, f"serve{n}")))
        for n in range(2)
    ]
    assert sum(logged) == len(receiver.received) == 4 * jobs, logged


def _log(tmp_path: Path, name: str) -> str:
    return (tmp_path / f"{name}-1.err").read_text(errors="replace")


@contextlib.asynccontextmanager
async def _serving_handler(handler: Any) -> Any:
    app = web.Application()
    app.router.add_post("/hook", handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    finally:
        await runner.cleanup()


async def _drop_schema(schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_DSN)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()
