"""The shared PostgreSQL Suno budget: what a turn costs, and issue 15's multi-process figures.

1. Per turn: the latency of ``acquire`` (a free budget: one turn at a time)
   and of ``try_acquire``, ``PostgresCallBudget`` against the in-process
   ``SunoBudget`` in the same run, and the round trips each takes, counted
   at a TCP proxy between the budget and PostgreSQL (a round trip: the client
   speaks, then waits for the server's answer).
2. Under saturation: three ``PostgresCallBudget`` (three processes' worth)
   with callers that always want another turn, on a budget of 20 turns per
   second: round trips per turn granted (waiting costs round trips too) and
   each one's share.
3. Issue 15: three ``clipjobs serve`` processes on one schema with the
   default ``CLIPJOBS_SUNO_MAX_RPS`` (2), ``--jobs`` jobs (300), the fake
   Suno over HTTP with its default limit (20 calls per 10 s): the busiest
   10 s at the fake, 430 answers, final stages, each process's share; then
   the same with one process SIGKILLed a third of the way in.

Run: python bench/bench_budget_pg.py [--dsn postgresql://…] [--jobs 300] [--turns 2000]
                                     [--quick] [--json PATH]
(the DSN defaults to CLIPJOBS_BENCH_PG_DSN, then CLIPJOBS_TEST_PG_DSN).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "postgres"))
from _budget_fleet import SUNO_LIMIT, FleetRun, run_fleet  # noqa: E402 -- after the path insert
from _common import bench_parser, parse_with_dsn, print_table, write_json  # noqa: E402

from clipjobs import Priority, SunoBudget, SystemClock  # noqa: E402
from clipjobs.app.ports import CallBudget, Slot  # noqa: E402
from clipjobs_postgres import PostgresCallBudget  # noqa: E402


def _schema() -> str:
    return f"bench_{secrets.token_hex(4)}"


class CountingProxy:
    """Forwards 127.0.0.1:<port> to PostgreSQL and counts the client's turns to speak."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self.port = 0
        #: Client messages sent after the server had answered (or first): round trips.
        self.round_trips = 0

    async def __aenter__(self) -> CountingProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()

    def dsn(self, dsn: str) -> str:
        parts = urlsplit(dsn)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@127.0.0.1:{self.port}" if userinfo else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        client_turn = [True]

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, client: bool) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    if client and client_turn[0]:
                        self.round_trips += 1
                    client_turn[0] = not client
                    dst.write(data)
                    await dst.drain()

        pumps = [
            asyncio.create_task(pump(reader, up_writer, True)),
            asyncio.create_task(pump(up_reader, writer, False)),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            for w in (writer, up_writer):
                w.close()


@contextlib.asynccontextmanager
async def counted(dsn: str) -> AsyncIterator[tuple[CountingProxy, str]]:
    parts = urlsplit(dsn)
    async with CountingProxy(parts.hostname or "127.0.0.1", parts.port or 5432) as proxy:
        yield proxy, proxy.dsn(dsn)


def _us(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"{statistics.median(ordered) * 1e6:,.0f} µs (p99 {p99 * 1e6:,.0f})"


async def _turns(
    budget: CallBudget,
    take: Callable[[CallBudget], Awaitable[Slot | None]],
    n: int,
    proxy: CountingProxy | None = None,
) -> tuple[list[float], float]:
    """Take ``n`` turns one at a time, each given back untimed; latencies and round trips each."""
    samples, trips = [], 0
    for _ in range(n):
        before = proxy.round_trips if proxy else 0
        start = time.perf_counter()
        slot = await take(budget)
        samples.append(time.perf_counter() - start)
        trips += (proxy.round_trips if proxy else 0) - before
        assert slot is not None
        await budget.unused(slot)
    return samples, trips / n


async def per_turn(dsn: str, turns: int) -> tuple[list[tuple[str, ...]], dict[str, Any]]:
    """Turns of the default budget (20 per 10 s) with 19 calls counted: one slot free.

    Latencies are timed straight to PostgreSQL; round trips are counted by a
    second budget on the same schema that talks through the counting proxy.
    """
    schema = _schema()
    figures: dict[str, Any] = {}
    # Unpaced: a turn's cost is what is measured, not the pace between turns (0.5 s at 2/s).
    local = SunoBudget(2.0, clock=SystemClock(), pacing=False)
    rows: list[tuple[str, ...]] = []
    async with counted(dsn) as (proxy, via):
        shared = await PostgresCallBudget.open(dsn, schema, 2.0, clock=SystemClock(), pacing=False)
        watched = await PostgresCallBudget.open(via, schema, 2.0, clock=SystemClock(), pacing=False)
        try:
            for budget in (local, shared):
                for _ in range(19):
                    await budget.acquire(Priority.POLL)
                await _turns(budget, lambda b: b.acquire(Priority.POLL), 20)  # warm up
            kinds: list[tuple[str, Callable[[CallBudget], Awaitable[Slot | None]]]] = [
                ("acquire", lambda b: b.acquire(Priority.POLL)),
                ("try_acquire", lambda b: b.try_acquire(Priority.CREDITS)),
            ]
            for label, take in kinds:
                base, _ = await _turns(local, take, turns)
                pg, _ = await _turns(shared, take, turns)
                await _turns(watched, take, 10)  # its connections prepare their statements
                _, trips = await _turns(watched, take, 200, proxy)
                rows += [
                    (f"SunoBudget (in-process), {label}", _us(base), "0"),
                    (f"PostgresCallBudget, {label}", _us(pg), f"{trips:.2f}"),
                ]
                figures[label] = {
                    "in_process_median_us": round(statistics.median(base) * 1e6, 1),
                    "shared_median_us": round(statistics.median(pg) * 1e6, 1),
                    "round_trips_per_turn": trips,
                }
            slot = await watched.acquire(Priority.POLL)
            costs = {}
            for name, op in (
                ("finished", lambda: watched.finished(slot)),
                ("status", watched.status),
                ("unused", lambda: watched.unused(Slot(slot.started_at, slot.priority, -1))),
            ):
                await op()
                before = proxy.round_trips
                for _ in range(100):
                    await op()
                costs[name] = (proxy.round_trips - before) / 100
            rows.append(
                (
                    "PostgresCallBudget, finished / unused / status",
                    "",
                    " / ".join(f"{costs[k]:.2f}" for k in ("finished", "unused", "status")),
                )
            )
            figures["other_round_trips"] = costs
        finally:
            await local.aclose()
            await _drop(dsn, schema)
            await shared.aclose()
            await watched.aclose()
    return rows, figures


async def saturated(dsn: str, seconds: float) -> tuple[list[tuple[str, ...]], dict[str, Any]]:
    """Three budgets, four callers each always wanting a turn, 20 turns per second between them."""
    schema = _schema()
    counts: dict[str, int] = {}
    async with counted(dsn) as (proxy, via):
        budgets = [
            await PostgresCallBudget.open(via, schema, 20.0, clock=SystemClock(), window_s=1.0)
            for _ in range(3)
        ]
        before = proxy.round_trips

        async def caller(name: str, budget: PostgresCallBudget) -> None:
            while True:
                slot = await budget.acquire(Priority.POLL)
                counts[name] = counts.get(name, 0) + 1
                await budget.finished(slot)

        tasks = [
            asyncio.create_task(caller(f"budget-{i}", b))
            for i, b in enumerate(budgets)
            for _ in range(4)
        ]
        await asyncio.sleep(seconds)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        trips = proxy.round_trips - before
        await _drop(dsn, schema)
        for budget in budgets:
            await budget.aclose()
    turns = sum(counts.values())
    shares = {k: round(v / turns, 3) for k, v in sorted(counts.items())}
    per_turn_trips = trips / max(1, turns)
    rows = [
        (
            f"3 budgets saturated ({seconds:g} s at 20/s)",
            f"{turns} turns, shares {list(shares.values())}",
            f"{per_turn_trips:.1f} incl. finished",
        )
    ]
    return rows, {"turns": turns, "shares": shares, "round_trips_per_turn": per_turn_trips}


async def _drop(dsn: str, schema: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def fleet(dsn: str, jobs: int, kill: bool) -> FleetRun:
    schema = _schema()
    expected_s = jobs / 2.0  # 2 calls a second, one generate a job
    with tempfile.TemporaryDirectory() as tmp:
        try:
            return await run_fleet(
                dsn,
                schema,
                jobs,
                Path(tmp),
                kill_after_s=expected_s / 3 if kill else None,
                finish_limit_s=expected_s * 3 + 60,
            )
        finally:
            await _drop(dsn, schema)


def _fleet_figures(run: FleetRun) -> dict[str, Any]:
    return {
        "jobs": run.jobs,
        "seconds": round(run.seconds, 1),
        "calls": len(run.calls),
        "peak_10s": run.peak,
        "peak_10s_after_kill": run.peak_after_kill if run.killed else None,
        "answered_430": run.rate_limited,
        "stages": run.stages,
        "calls_per_process": run.shares,
        "killed": run.killed,
    }


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--turns", type=int, default=2000, help="turns timed per row")
    parser.add_argument("--saturated-s", type=float, default=10.0)
    parser.add_argument("--jobs", type=int, default=300, help="jobs of the multi-process runs")
    args = parse_with_dsn(parser)
    if args.quick:
        args.turns, args.saturated_s, args.jobs = 100, 2.0, 12

    rows: list[tuple[str, ...]] = [("what", "latency per turn (median)", "round trips")]
    turn_rows, turn_figures = asyncio.run(per_turn(args.dsn, args.turns))
    rows += turn_rows
    sat_rows, sat_figures = asyncio.run(saturated(args.dsn, args.saturated_s))
    rows += sat_rows
    note = (
        f"default budget (20 per 10 s) with 19 calls counted; {args.turns} turns per row taken"
        " one at a time, each given back; round trips counted at a TCP proxy"
    )
    print_table("Shared PostgreSQL Suno budget", [note], rows)

    runs = [asyncio.run(fleet(args.dsn, args.jobs, kill)) for kill in (False, True)]
    print()
    print(
        f"# 3 x clipjobs serve, CLIPJOBS_SUNO_MAX_RPS=2 (default), fake Suno limit"
        f" {SUNO_LIMIT} per 10 s, over HTTP"
    )
    for run in runs:
        print(run.summary())
    figures = {
        "per_turn": turn_figures,
        "saturated": sat_figures,
        "fleet": [_fleet_figures(r) for r in runs],
    }
    write_json(args.json, figures)


if __name__ == "__main__":
    main()
