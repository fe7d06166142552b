"""The fleet list (SPEC 10.3) over 100,000 stored jobs: SQLite, then PostgreSQL.

For each store, 100,000 jobs (20 users, 200 channels, one in ten failed) are
stored through ``append``, then the real HTTP API on 127.0.0.1 answers, as an
admin, three requests in turn, paired in every round so a noisy neighbour
slows all three alike:

1. the first page of a filtered list: ``GET /jobs?stage=STAGE_90_FAILED&limit=50``;
2. a deep cursor page: ``GET /jobs?limit=50&cursor=…`` at the middle of the
   whole list (50,000 jobs in);
3. a plain ``GET /jobs/{jobId}`` (the baseline: one primary-key read).

Reported: p50 and p99 latency of each, and each list's p99 over GET's.
Goal (issue 18): p99 < 50 ms for both list pages. PostgreSQL runs when
``CLIPJOBS_BENCH_PG_DSN`` or ``CLIPJOBS_TEST_PG_DSN`` names a server.

Run: python bench/bench_fleet.py [--jobs 100000] [--rounds 300] [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

sys.path.insert(0, str(Path(__file__).parent))
sys.path.append(str(Path(__file__).resolve().parents[1] / "tests"))  # for _backends
from _common import machine, table

from _backends import scratch_pg_store, scripted_service
from clipjobs import (
    EventStore,
    FakeClock,
    PageKey,
    TokenAuthenticator,
)
from clipjobs.domain.commands import FailJob
from clipjobs.testing import new_job, step
from clipjobs_aiohttp import ApiConfig, create_app
from clipjobs_aiohttp._fleet import encode_cursor
from clipjobs_sqlite import SQLiteEventStore

ADMIN = "bench-fleet-admin-token"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
GOAL_MS = 50.0


async def fill(store: EventStore, jobs: int, concurrency: int = 256) -> list[str]:
    """Store ``jobs`` jobs a second apart; the ids, oldest first."""
    ids: list[str] = [""] * jobs
    queue = iter(range(jobs))

    async def worker() -> None:
        for i in queue:
            commit = new_job(
                at=T0 + timedelta(seconds=i), user_id=f"user-{i % 20}", channel_id=f"ch-{i % 200}"
            )
            await store.append(commit)
            if i % 10 == 0:
                failed = step(commit.state, FailJob("SUNO_REJECTED", "no", commit.state.created_at))
                await store.append(failed)
            ids[i] = commit.job_id

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ids


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(store: EventStore, ids: list[str], rounds: int) -> dict[str, Any]:
    clock = FakeClock(T0 + timedelta(seconds=len(ids) + 60))
    service = scripted_service(store, clock)
    app = create_app(service, TokenAuthenticator({}, {ADMIN: "root"}), ApiConfig())
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    middle = await store.load(ids[len(ids) // 2])
    assert middle is not None
    cursor = encode_cursor(service, PageKey.of(middle))
    base = str(server.make_url("/api/music-clips"))
    headers = {"Authorization": f"Bearer {ADMIN}"}
    requests: dict[str, str] = {
        "first filtered page": f"{base}/jobs?stage=STAGE_90_FAILED&limit=50",
        "deep cursor page": f"{base}/jobs?limit=50&cursor={cursor}",
        "GET job (baseline)": f"{base}/jobs/{ids[len(ids) // 3]}",
    }
    times: dict[str, list[float]] = {name: [] for name in requests}
    try:
        async with aiohttp.ClientSession(headers=headers) as session:

            async def call(url: str) -> float:
                start = time.perf_counter()
                async with session.get(url) as response:
                    await response.read()
                    assert response.status == 200, response.status
                return time.perf_counter() - start

            for url in requests.values():  # warm up caches and connections
                for _ in range(5):
                    await call(url)
            names = list(requests)
            for r in range(rounds):
                # Rotate who goes first, so drift favours nobody.
                for name in names[r % 3 :] + names[: r % 3]:
                    times[name].append(await call(requests[name]))
    finally:
        await server.close()
    baseline = _percentile(times["GET job (baseline)"], 0.99)
    return {
        name: {
            "p50_ms": round(statistics.median(samples) * 1000, 2),
            "p99_ms": round(_percentile(samples, 0.99) * 1000, 2),
            "p99_over_get": round(_percentile(samples, 0.99) / baseline, 2),
        }
        for name, samples in times.items()
    }


@asynccontextmanager
async def sqlite_store() -> AsyncIterator[EventStore]:
    with tempfile.TemporaryDirectory() as tmp:
        async with SQLiteEventStore(Path(tmp) / "fleet.db", synchronous="NORMAL") as store:
            yield store


def postgres_store(dsn: str) -> AbstractAsyncContextManager[EventStore]:
    return scratch_pg_store(dsn, f"bench_{secrets.token_hex(4)}", max_size=8)


async def run_one(name: str, opener: Callable[[], Any], jobs: int, rounds: int) -> dict[str, Any]:
    async with opener() as store:
        started = time.perf_counter()
        ids = await fill(store, jobs)
        filled = time.perf_counter() - started
        print(f"{name}: stored {jobs} jobs in {filled:.1f} s", flush=True)
        figures = await measure(store, ids, rounds)
    return {"jobs": jobs, "fill_s": round(filled, 1), **figures}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    dsn = os.environ.get("CLIPJOBS_BENCH_PG_DSN") or os.environ.get("CLIPJOBS_TEST_PG_DSN")
    backends: list[tuple[str, Callable[[], Any]]] = [("sqlite", sqlite_store)]
    if dsn:
        backends.append(("postgres", lambda: postgres_store(dsn)))
    results: dict[str, Any] = {}
    for name, opener in backends:
        results[name] = await run_one(name, opener, args.jobs, args.rounds)
    return results


def report(results: dict[str, Any]) -> str:
    rows: list[tuple[str, ...]] = [("store", "request", "p50 ms", "p99 ms", "p99 / GET job")]
    for store, figures in results.items():
        for name, f in figures.items():
            if isinstance(f, dict):
                rows.append(
                    (
                        store,
                        name,
                        f"{f['p50_ms']:.2f}",
                        f"{f['p99_ms']:.2f}",
                        f"{f['p99_over_get']:.2f}x",
                    )
                )
    lines = [table(rows), ""]
    for store, figures in results.items():
        for name in ("first filtered page", "deep cursor page"):
            p99 = figures[name]["p99_ms"]
            verdict = "met" if p99 < GOAL_MS else "NOT met"
            lines.append(f"{store} {name}: p99 {p99:.1f} ms, goal < {GOAL_MS:.0f} ms {verdict}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--quick", action="store_true", help="2,000 jobs, 30 rounds (a smoke test)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.rounds = 2_000, 30
    print(f"bench_fleet on {machine()}: {args.jobs} jobs, {args.rounds} rounds", flush=True)
    results = asyncio.run(main_async(args))
    print(report(results), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
