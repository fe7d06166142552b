"""No job waits for a dead process: ``clipjobs serve`` killed with SIGKILL, with default settings.

- SQLite, one process, the default worker id (``host:pid``): killed while 60 jobs wait for a
  Suno budget paused by a 430, and started again. Nothing was in flight, so nothing is
  uncertain; the new process reaps its dead predecessor at once and every job moves within
  5 s of the restart, then succeeds.
- PostgreSQL, two processes behind one ``PUBLIC_BASE_URL`` (a proxy, so callbacks reach the
  survivor): one is killed mid-run. Every job succeeds within 30 s of the kill: the dead
  worker is reaped within a heartbeat, a callback adopts a task whose answer was lost, and a
  send that never reached Suno is sent once more.
- SIGTERM: no Suno call starts after it; only the calls in flight finish.

Every log stays contiguous with exactly one success.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from _stack import contiguous, event_types, tasks_per_job
from aiohttp import web

from _backends import PG_DSN, scratch_pg_store
from _procs import HEADERS, SUNO_KEY, CallLog, Serve, free_port, process_env, run_once
from clipjobs import EventStore, Stage
from clipjobs_sqlite import SQLiteEventStore
from clipjobs_suno.fake import FakeSuno, running_fake_suno

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

QUICK = {"text_after_s": 0.3, "first_after_s": 0.6, "complete_after_s": 1.0}
#: Default settings but for what the scenarios need (fast polls, a cap for 60 jobs).
SETTINGS = {
    "CLIPJOBS_POLL_AFTER_S": "1",
    "CLIPJOBS_POLL_INTERVAL_S": "1",
    "CLIPJOBS_MAX_ACTIVE_PER_USER": "1000",
}


async def get_job(http: aiohttp.ClientSession, url: str, job_id: str) -> dict[str, Any]:
    async with http.get(f"{url}/api/music-clips/jobs/{job_id}", headers=HEADERS) as response:
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body


async def assert_all_succeeded_once(store: EventStore, job_ids: list[str]) -> None:
    for job_id in job_ids:
        state = await store.load(job_id)
        records = await store.read(job_id)
        types = event_types(records)
        assert state is not None and state.stage is Stage.SUNO_SUCCESS, (job_id, types)
        assert contiguous(records), (job_id, [r.version for r in records])
        assert types.count("SunoSucceeded") == 1, (job_id, types)
        assert types.count("SunoRequestSent") <= 2, (job_id, types)


async def test_a_restart_after_kill_resumes_every_waiting_job_at_once(tmp_path: Path) -> None:
    """SIGKILL while 60 jobs wait for a budget paused by Suno's 430; the restart (default
    worker id, so a stranger by pid) moves every job within 5 s, none is uncertain, all succeed.
    """
    db_url = f"sqlite:///{tmp_path / 'jobs.db'}"
    async with (
        running_fake_suno(
            api_key=SUNO_KEY, scenario="rate-limited", rate_limit=1_000_000, **QUICK
        ) as (fake_url, fake),
        aiohttp.ClientSession() as http,
    ):
        url = f"http://127.0.0.1:{free_port()}"
        settings = process_env(url, fake_url, db_url, **SETTINGS, CLIPJOBS_SUNO_MAX_RPS="20")
        server = Serve(settings, tmp_path)
        try:
            await server.start()
            jobs = [await run_once(http, url, f"channel_{i:02d}") for i in range(60)]
            waiting = [await get_job(http, url, job) for job in jobs]
            queued = [b for b in waiting if b["queue"] is not None]
            # The budget is paused by the 430s: the jobs say they wait, and where.
            assert len(queued) >= 50, [b["stage"] for b in waiting]
            assert all(b["stage"] == Stage.REQUEST_ACCEPTED.value for b in queued)
            assert all(b["progressText"].startswith("В очереди Suno") for b in queued)
            assert await server.kill() < 0
            fake.configure(scenario="success")
            await server.start()
            restarted = time.monotonic()
            async with SQLiteEventStore(tmp_path / "jobs.db") as store:
                moved: dict[str, float] = {}
                while len(moved) < len(jobs) and time.monotonic() - restarted < 60:
                    for job in jobs:
                        state = await store.load(job)
                        if job not in moved and state is not None and state.stage.number >= 30:
                            moved[job] = time.monotonic() - restarted
                    await asyncio.sleep(0.1)
                assert len(moved) == len(jobs)
                assert max(moved.values()) < 5.0, sorted(moved.values())[-5:]
                while await store.count_active() > 0 and time.monotonic() - restarted < 60:
                    await asyncio.sleep(0.2)
                await assert_all_succeeded_once(store, jobs)
                for job in jobs:
                    assert "SunoRequestUncertain" not in event_types(await store.read(job))
            assert max(tasks_per_job(fake.tasks()).values()) == 1
        finally:
            await server.ensure_dead()


class Proxy:
    """One ``PUBLIC_BASE_URL`` in front of several servers: each request goes to the next one
    that answers, as a load balancer would once a backend is down.
    """

    def __init__(self) -> None:
        self.backends: list[str] = []
        self._turn = 0
        self._session: aiohttp.ClientSession | None = None

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host",)}
        for _ in range(2 * len(self.backends)):
            backend = self.backends[self._turn % len(self.backends)]
            self._turn += 1
            with contextlib.suppress(aiohttp.ClientConnectionError):
                async with self._session.request(
                    request.method, backend + request.path_qs, data=body, headers=headers
                ) as answer:
                    return web.Response(
                        status=answer.status,
                        body=await answer.read(),
                        content_type=answer.content_type,
                    )
        return web.Response(status=502)

    @contextlib.asynccontextmanager
    async def running(self, port: int) -> AsyncIterator[str]:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        async with aiohttp.ClientSession() as self._session:
            try:
                await web.TCPSite(runner, "127.0.0.1", port).start()
                yield f"http://127.0.0.1:{port}"
            finally:
                await runner.cleanup()


@web.middleware
async def slow_generate(request: web.Request, handler: Any) -> web.StreamResponse:
    """Generate takes 0.2-0.5 s, half before the task exists and half after: a kill catches
    sends that never reached Suno and sends whose answer was lost."""
    if request.path != "/api/v1/generate":
        return await handler(request)  # type: ignore[no-any-return]
    delay = random.uniform(0.2, 0.5)
    if random.random() < 0.5:
        await asyncio.sleep(delay)
        return await handler(request)  # type: ignore[no-any-return]
    response = await handler(request)
    await asyncio.sleep(delay)
    return response  # type: ignore[no-any-return]


@pytest.mark.postgres
@pytest.mark.skipif(not PG_DSN, reason="no PostgreSQL: set CLIPJOBS_TEST_PG_DSN")
async def test_two_processes_behind_one_url_one_killed_every_job_succeeds(
    tmp_path: Path,
) -> None:
    """Two processes on one PostgreSQL behind one URL, one SIGKILLed mid-run: every job
    succeeds within 30 s of the kill, each with one success and at most two Suno tasks.
    """
    schema = f"live_{random.randrange(16**8):08x}"
    fake = FakeSuno(api_key=SUNO_KEY)
    fake.app.middlewares.append(slow_generate)
    proxy = Proxy()
    async with (
        running_fake_suno(
            fake=fake,
            credits=1_000_000,
            rate_limit=1_000_000,
            callback_retry_delay_s=0.3,
            callback_timeout_s=5.0,
            **QUICK,
        ) as (fake_url, _),
        proxy.running(free_port()) as public,
        aiohttp.ClientSession() as http,
        scratch_pg_store(PG_DSN, schema) as store,
    ):
        servers = []
        for n in range(2):
            url = f"http://127.0.0.1:{free_port()}"
            settings = process_env(
                url,
                fake_url,
                PG_DSN,
                **SETTINGS,
                PUBLIC_BASE_URL=public,
                CLIPJOBS_PG_SCHEMA=schema,
                CLIPJOBS_SUNO_MAX_RPS="50",
                CLIPJOBS_RESEND_UNCERTAIN_AFTER_S="10",
            )
            servers.append(Serve(settings, tmp_path, f"serve{n}"))
            proxy.backends.append(url)
        try:
            await asyncio.gather(*(s.start() for s in servers))
            jobs = await asyncio.gather(*(run_once(http, public, f"ch_{i:02d}") for i in range(40)))
            await asyncio.sleep(0.6)  # sends and callbacks are under way
            assert await servers[1].kill() < 0
            killed = time.monotonic()
            while await store.count_active() > 0 and time.monotonic() - killed < 30:
                await asyncio.sleep(0.25)
            left = await store.count_active()
            assert left == 0, f"{left} jobs unfinished 30 s after the kill"
            await assert_all_succeeded_once(store, jobs)
            assert max(tasks_per_job(fake.tasks()).values()) <= 2
        finally:
            await asyncio.gather(*(s.ensure_dead() for s in servers))


async def test_sigterm_starts_no_new_suno_call(tmp_path: Path) -> None:
    """After SIGTERM no Suno call starts, although the budget frees turns during the shutdown
    grace; the calls in flight finish and the server exits 0.
    """
    calls = CallLog()
    fake = FakeSuno(api_key=SUNO_KEY)
    fake.app.middlewares.append(calls.middleware)
    fake.app.middlewares.append(slow_generate)
    async with (
        running_fake_suno(fake=fake, rate_limit=1_000_000, **QUICK) as (fake_url, _),
        aiohttp.ClientSession() as http,
    ):
        url = f"http://127.0.0.1:{free_port()}"
        db_url = f"sqlite:///{tmp_path / 'jobs.db'}"
        # 20 calls per 10 s: the sender waits in the budget for the next turn, which comes
        # within the shutdown grace (10 s) if it keeps asking.
        settings = process_env(url, fake_url, db_url, **SETTINGS, CLIPJOBS_SUNO_MAX_RPS="2")
        server = Serve(settings, tmp_path)
        try:
            await server.start()
            await asyncio.gather(*(run_once(http, url, f"channel_{i:03d}") for i in range(120)))
            while len(calls.calls) < 20:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # every turn of the window is taken: the sender waits
            assert server.proc is not None
            terminated = time.monotonic()
            await server.stop()
            assert server.proc.returncode == 0
        finally:
            await server.ensure_dead()
    after = [c.at - terminated for c in calls.calls if c.at > terminated]
    # A send loop runs at most 4 calls at once: those in flight may still reach the fake an
    # instant after the signal; nothing starts later.
    assert len(after) <= 4 and all(t < 0.5 for t in after), after
    assert len(calls.calls) < 40  # the queue was not drained: sends stopped mid-way
