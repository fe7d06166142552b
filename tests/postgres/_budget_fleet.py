"""Three ``clipjobs serve`` processes on one PostgreSQL schema against one fake Suno over HTTP.

What issue 15 must show, used by ``test_budget_multiprocess.py`` (a CI-sized
run) and ``bench/bench_budget_pg.py`` (the issue's 300 jobs). The fake Suno
keeps its default limit (20 calls per 10 s per key) and records when each API
call arrives; the processes run with the default ``CLIPJOBS_SUNO_MAX_RPS``
(2), so only a budget they share keeps them inside Suno's limit. Optionally
one process is SIGKILLed mid-run.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
from attrs import frozen

from clipjobs.app.budget import busiest
from clipjobs_postgres import PostgresEventStore
from clipjobs_suno.fake import FakeSuno, running_fake_suno

# bench/bench_budget_pg.py imports this module outside pytest, which has tests/ on the path.
sys.path.append(str(Path(__file__).resolve().parents[1]))
from _procs import SUNO_KEY, Call, CallLog, Serve, free_port, process_env, run_once, running

PROCESSES = 3
SUNO_WINDOW_S = 10.0
SUNO_LIMIT = 20


peak = busiest


@frozen
class FleetRun:
    """What one run measured."""

    jobs: int
    seconds: float
    stages: dict[str, int]
    calls: list[Call]
    #: Calls each process's budget let through (``budget_calls.owner``), by worker id.
    shares: dict[str, int]
    killed: str | None
    killed_at: float | None

    @property
    def peak(self) -> int:
        """The most calls that reached the fake in any 10 s window (430s included)."""
        return peak([c.at for c in self.calls], SUNO_WINDOW_S)

    @property
    def peak_after_kill(self) -> int:
        if self.killed_at is None:
            return 0
        return peak([c.at for c in self.calls if c.at >= self.killed_at], SUNO_WINDOW_S)

    @property
    def rate_limited(self) -> int:
        return sum(1 for c in self.calls if c.code == 430)

    def share_line(self) -> str:
        if not self.shares:
            return "no calls in the shared budget's record"
        total = sum(self.shares.values())
        ranked = sorted(self.shares.items(), key=lambda kv: kv[1])
        (slow, low), (fast, high) = ranked[0], ranked[-1]
        return (
            f"fastest process {fast} {high / total:.0%} of calls, slowest {slow} {low / total:.0%}"
            f" (calls per process: {dict(sorted(self.shares.items()))})"
        )

    def summary(self) -> str:
        kill = f", {self.killed} SIGKILLed mid-run" if self.killed else ""
        after = f"; after the kill {self.peak_after_kill}" if self.killed else ""
        endpoints = Counter(c.endpoint for c in self.calls)
        return (
            f"{self.jobs} jobs on {PROCESSES} processes{kill}: {self.seconds:.0f} s;"
            f" {len(self.calls)} calls reached the fake ({dict(endpoints)});"
            f" busiest {SUNO_WINDOW_S:g} s: {self.peak} calls{after} (limit {SUNO_LIMIT});"
            f" answered 430: {self.rate_limited}; stages {self.stages}; {self.share_line()}"
        )


@contextlib.asynccontextmanager
async def servers(dsn: str, schema: str, suno_url: str, tmp: Path) -> AsyncIterator[list[Serve]]:
    fleet = []
    for i in range(PROCESSES):
        url = f"http://127.0.0.1:{free_port()}"
        env = process_env(
            url,
            suno_url,
            dsn,
            CLIPJOBS_PG_SCHEMA=schema,
            CLIPJOBS_WORKER_ID=f"fleet-{i}",
            # CLIPJOBS_SUNO_MAX_RPS is left at its default (2): Suno's limit.
            CLIPJOBS_MAX_ACTIVE_PER_USER="100000",
            # A job of a killed process: its callbacks are lost (polled after 5 s),
            # a send it left uncertain is resent after 10 s.
            CLIPJOBS_POLL_AFTER_S="5",
            CLIPJOBS_POLL_INTERVAL_S="5",
            CLIPJOBS_RESEND_UNCERTAIN_AFTER_S="10",
            CLIPJOBS_MEDIA_DIR=str(tmp / f"media-{i}"),
        )
        fleet.append(Serve(env, tmp, f"fleet-{i}"))
    async with running(fleet):
        yield fleet


async def run_fleet(
    dsn: str,
    schema: str,
    jobs: int,
    tmp: Path,
    *,
    kill_after_s: float | None = None,
    finish_limit_s: float = 600.0,
) -> FleetRun:
    """Start ``jobs`` jobs across the processes at once and wait until every one has ended."""
    store = await PostgresEventStore.open(dsn, schema, min_size=1, max_size=2)
    log = CallLog()
    fake = FakeSuno(
        api_key=SUNO_KEY,
        credits=10_000_000,
        text_after_s=0.3,
        first_after_s=0.6,
        complete_after_s=1.0,
        callback_retries=1,
        callback_retry_delay_s=0.2,
    )
    fake.app.middlewares.append(log.middleware)
    killed: str | None = None
    killed_at: float | None = None
    try:
        async with (
            running_fake_suno(fake=fake) as (suno_url, _),
            servers(dsn, schema, suno_url, tmp) as fleet,
            aiohttp.ClientSession() as http,
        ):
            began = time.monotonic()
            job_ids = await asyncio.gather(
                *(
                    run_once(http, fleet[i % PROCESSES].url, f"fleet-ch-{i:04d}")
                    for i in range(jobs)
                )
            )
            if kill_after_s is not None:
                await asyncio.sleep(max(0.0, kill_after_s - (time.monotonic() - began)))
                victim = fleet[-1]
                await victim.kill()
                killed, killed_at = victim.name, time.monotonic()
            async with asyncio.timeout(finish_limit_s):
                while await store.count_active() > 0:
                    await asyncio.sleep(0.5)
            seconds = time.monotonic() - began
        stages: Counter[str] = Counter()
        for job in job_ids:
            state = await store.load(job)
            assert state is not None
            stages[state.stage.value] += 1
        rows = await _owners(dsn, schema)
        return FleetRun(jobs, seconds, dict(stages), log.calls, rows, killed, killed_at)
    finally:
        await store.aclose()


async def _owners(dsn: str, schema: str) -> dict[str, int]:
    """Calls each process's budget let through, read from the budget's own record."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            f'SELECT owner, count(*) AS n FROM "{schema}".budget_calls GROUP BY owner'
        )
        return {r["owner"]: r["n"] for r in rows}
    finally:
        await conn.close()
