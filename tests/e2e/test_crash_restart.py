"""``clipjobs serve`` killed with SIGKILL mid-flight and restarted on the same SQLite file.

The fake Suno runs in this test's process; ``clipjobs serve`` is a real
subprocess that sends to it, polls it and takes its callbacks. While 200 jobs
are being submitted and worked on, the server is killed two or three times at
random moments and started again on the same database. Every job the API
acknowledged must reach a terminal stage with a clean log, and none may be
sent to Suno twice.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import aiohttp
import pytest
from _stack import (
    contiguous,
    event_types,
    job_of,
    never_down,
    stage_numbers,
    tasks_per_job,
    terminal_events,
)
from aiohttp import web

from _backends import PG_DSN, scratch_pg_store
from _procs import HEADERS, SUNO_KEY, USER, Serve, free_port, process_env
from clipjobs import EventStore, SendState, Stage
from clipjobs_sqlite import SQLiteEventStore
from clipjobs_suno.fake import FakeSuno, running_fake_suno

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

JOBS = 200
TIMEOUT_S = 15
#: The crash scenario's settings: fast polls, a short timeout, a budget that never binds,
#: and the default worker id (``host:pid``: a restart finds its dead predecessor by its pid).
SETTINGS = {
    "CLIPJOBS_ONE_JOB_PER_CHANNEL": "off",
    "CLIPJOBS_POLL_AFTER_S": "0.5",
    "CLIPJOBS_POLL_INTERVAL_S": "0.5",
    "CLIPJOBS_JOB_TIMEOUT_S": str(TIMEOUT_S),
    "CLIPJOBS_SUNO_MAX_RPS": "1000",
    "CLIPJOBS_MAX_ACTIVE_PER_USER": "100000",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]


def slow_generate(rng: random.Random) -> Middleware:
    """A middleware that makes the fake's generate take 50-300 ms, before or after the task exists.

    Like Suno's own: it widens the moment a kill can catch a send in flight, whether
    Suno has not yet created the task or created it and the answer is still on its way.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path != "/api/v1/generate":
            return await handler(request)
        delay = rng.uniform(0.05, 0.3)
        if rng.random() < 0.5:
            await asyncio.sleep(delay)
            return await handler(request)
        response = await handler(request)
        await asyncio.sleep(delay)
        return response

    return middleware


async def submit(
    http: aiohttp.ClientSession, urls: list[str], keys: list[str], acknowledged: dict[str, str]
) -> None:
    """runOnce for each key, retried (same Idempotency-Key, next server) until one says 202."""
    turn = 0
    for key in keys:
        while True:
            url = urls[turn % len(urls)]
            turn += 1
            try:
                async with http.post(
                    f"{url}/api/music-clips/channels/{key}/runOnce",
                    headers={**HEADERS, "Idempotency-Key": key},
                    timeout=aiohttp.ClientTimeout(total=10),
                ) as response:
                    if response.status == 202:
                        job_id = (await response.json())["jobId"]
                        # A retried key names the job the first attempt made.
                        assert acknowledged.setdefault(key, job_id) == job_id
                        break
                    assert response.status >= 500, await response.text()
            except (aiohttp.ClientError, TimeoutError):
                pass  # that server is down (killed): try again, elsewhere or when it is back
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.08)  # spread the submissions over the kills


async def unfinished(http: aiohttp.ClientSession, url: str, job_ids: list[str]) -> list[str]:
    left = []
    for job_id in job_ids:
        async with http.get(f"{url}/api/music-clips/jobs/{job_id}", headers=HEADERS) as response:
            assert response.status == 200, await response.text()
            if not (await response.json())["done"]:
                left.append(job_id)
    return left


async def crash_run(
    tmp_path: Path,
    scenario: str,
    db_url: str,
    open_store: Callable[[], AbstractAsyncContextManager[EventStore]],
    *,
    processes: int = 1,
    extra_env: dict[str, str] | None = None,
) -> str:
    """Run the crash scenario; assert on the store and the fake; a line of figures."""
    seed = int(os.environ.get("CLIPJOBS_CRASH_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    started = time.monotonic()
    fake = FakeSuno(api_key=SUNO_KEY)
    fake.app.middlewares.append(slow_generate(random.Random(seed)))
    async with (
        running_fake_suno(
            fake=fake,
            scenario=scenario,
            credits=100_000,
            text_after_s=0.4,
            first_after_s=0.8,
            complete_after_s=1.2,
            rate_limit=100_000,
            rate_window_s=1.0,
            callback_retry_delay_s=0.5,
            callback_timeout_s=5.0,
        ) as (fake_url, _),
        aiohttp.ClientSession() as http,
    ):
        urls = [f"http://127.0.0.1:{free_port()}" for _ in range(processes)]
        servers = [
            Serve(
                process_env(url, fake_url, db_url, **SETTINGS, **(extra_env or {})),
                tmp_path,
                f"serve{n}",
            )
            for n, url in enumerate(urls)
        ]
        acknowledged: dict[str, str] = {}
        keys = [f"key_{i:03d}" for i in range(JOBS)]
        kills = rng.choice((2, 3))
        killed: list[tuple[str, int]] = []
        try:
            for server in servers:
                await server.start()
            submitters = [
                asyncio.create_task(submit(http, urls[i % processes :], keys[i::4], acknowledged))
                for i in range(4)
            ]
            for _ in range(kills):
                await asyncio.sleep(rng.uniform(0.3, 2.0))
                victim = rng.choice(servers)
                killed.append((victim.name, len(acknowledged)))
                assert await victim.kill() == -signal.SIGKILL
                await victim.start()
            async with asyncio.timeout(30):
                await asyncio.gather(*submitters)
            job_ids = list(acknowledged.values())
            async with asyncio.timeout(TIMEOUT_S + 25):
                while left := await unfinished(http, urls[0], job_ids):
                    await asyncio.sleep(0.5)
            for server in servers:
                assert await server.stop() == 0
        finally:
            for server in servers:
                await server.ensure_dead()
        tasks = fake.tasks()
    elapsed = time.monotonic() - started

    async with open_store() as store:
        histories = {job_id: await store.read(job_id) for job_id in job_ids}
        finals = {job_id: await store.load(job_id) for job_id in job_ids}
        listed = [await store.list_jobs(USER, key) for key in keys]

    note = f"seed {seed}, kills (server, acknowledged jobs then) {killed}"
    assert len(acknowledged) == JOBS, note
    assert left == []
    # One job per key: no retried runOnce made a second job.
    assert [len(jobs) for jobs in listed] == [1] * JOBS, note
    ends: Counter[str] = Counter()
    for job_id, history in histories.items():
        state = finals[job_id]
        assert state is not None and state.done, (note, job_id, state)
        types = event_types(history)
        assert contiguous(history), (note, job_id, [r.version for r in history])
        assert never_down(stage_numbers(history)), (note, job_id, types)
        assert len(terminal_events(history)) == 1, (note, job_id, types)
        assert state.version == len(history)
        ends[state.stage.value] += 1
    per_job = tasks_per_job(tasks)
    task_of = {t["taskId"]: job_of(t) for t in tasks}
    assert set(per_job) <= set(job_ids)
    assert max(per_job.values()) == 1, (note, per_job.most_common(3))
    for job_id, state in finals.items():
        assert state is not None
        if state.task_id is not None:
            # The job's task is the one task Suno made for it.
            assert task_of[state.task_id] == job_id, (note, job_id)
        if per_job[job_id] == 0:
            # Never reached Suno: only a send cut short by a kill ends like that, by timing out.
            assert state.stage is Stage.TIMEOUT, (note, job_id, state.stage)
    if scenario == "no-callback":
        assert all(t["deliveries"] == [] for t in tasks)
        for history in histories.values():
            sources = {getattr(r.event, "source", None) for r in history} - {None, "generate"}
            assert sources <= {"poll"}, note
    uncertain = sum(1 for h in histories.values() if "SunoRequestUncertain" in event_types(h))
    assert all(
        s is not None and (s.stage is not Stage.TIMEOUT or s.send_state is SendState.UNCERTAIN)
        for s in finals.values()
    ), note
    lives = sum(server.lives for server in servers)
    return (
        f"crash test ({scenario}, {processes} process(es)): {note}; {JOBS} jobs in "
        f"{elapsed:.1f} s, {lives} lives; ends {dict(ends)}; {uncertain} left uncertain by a "
        f"kill; {len(tasks)} generate calls at the fake"
    )


@pytest.mark.parametrize("scenario", ["success", "no-callback"])
async def test_kill_9_and_restart_lose_nothing_and_send_nothing_twice(
    tmp_path: Path, scenario: str
) -> None:
    """200 jobs through 2-3 SIGKILLs of ``clipjobs serve`` at random moments: every acknowledged job
    ends in a terminal stage, with contiguous versions, stages never going down, one terminal
    event, and at most one generate call at the fake Suno. Without callbacks, everything after
    the task's creation comes from polls the restarted server found in the store.
    """
    db = tmp_path / "clipjobs.db"
    print(
        "\n" + await crash_run(tmp_path, scenario, f"sqlite:///{db}", lambda: SQLiteEventStore(db))
    )


@pytest.mark.postgres
@pytest.mark.skipif(not PG_DSN, reason="no CLIPJOBS_TEST_PG_DSN: PostgreSQL not set")
async def test_two_processes_on_postgres_killed_in_turn_lose_nothing(tmp_path: Path) -> None:
    """Two ``clipjobs serve`` processes share one PostgreSQL database; 2-3 SIGKILLs of either at
    random moments: the same guarantees hold, and leases never let both send one job.
    """
    schema = f"e2e_crash_{secrets.token_hex(4)}"
    db_url = "postgresql://" + PG_DSN.split("://", 1)[1]
    try:
        line = await crash_run(
            tmp_path,
            "success",
            db_url,
            lambda: scratch_pg_store(PG_DSN, schema),
            processes=2,
            extra_env={"CLIPJOBS_PG_SCHEMA": schema},
        )
    finally:
        async with scratch_pg_store(PG_DSN, schema):
            pass  # drop the schema even when the run failed before reading it
    print("\n" + line)
