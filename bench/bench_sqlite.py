"""The SQLite store: concurrent appends vs eventsourcing's SQLite recorder, and load vs log length.

1. appends/s with 100 jobs appending at once (5 appends a job, each decided on
   the previous one, as JobService does), against eventsourcing's
   ``SQLiteApplicationRecorder`` doing the same inserts (the same encoded
   events) from a thread pool — both in WAL mode with the same ``synchronous``
   setting, fresh files each repeat, timed back to back, which side first
   alternating. clipjobs also writes
   the projection row; eventsourcing only the events. Goal (issue 3): >= 2x.
2. ``load`` reads/s for a job with 5 events vs one with 500. Goal: the same
   within noise (the projection row is one primary-key look-up). ``read`` +
   ``fold`` of the same logs is shown for contrast.

Run: python bench/bench_sqlite.py [--synchronous FULL|NORMAL] [--repeats 7] [--json PATH]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteConnectionPool, SQLiteDatastore

sys.path.insert(0, str(Path(__file__).parent))
from _common import bench_parser, machine, print_table, verdict, write_json

from clipjobs import (
    Commit,
    GenerationParams,
    JobAccepted,
    ProviderStatus,
    Source,
    SunoProgressObserved,
    SunoRequestSent,
    SunoTaskCreated,
    fold,
)
from clipjobs.app.ports import EventStore
from clipjobs.domain.codec import encode_event
from clipjobs.domain.events import Event
from clipjobs_sqlite import SQLiteEventStore, Synchronous

JOBS = 100
APPENDS_PER_JOB = 5
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def job_log(job_id: str, length: int) -> list[Event]:
    """A valid log: accepted, sent, task created, then progress observations."""
    at = [T0 + timedelta(seconds=i) for i in range(length)]
    events: list[Event] = [
        JobAccepted(job_id, "ch", f"u-{job_id}", "req", GenerationParams(prompt="a song"), at[0]),
        SunoRequestSent(1, at[1]),
        SunoTaskCreated(f"task-{job_id}", Source.GENERATE, at[2]),
    ]
    statuses = [ProviderStatus.PENDING, ProviderStatus.TEXT_SUCCESS]
    events += [SunoProgressObserved(statuses[i % 2], Source.POLL, at[i]) for i in range(3, length)]
    return events[:length]


def chain(job_id: str, appends: int, per_append: int = 1) -> list[Commit]:
    """The commits that write a job's log ``per_append`` events at a time."""
    events = job_log(job_id, appends * per_append)
    commits, state = [], None
    for i in range(0, len(events), per_append):
        batch = tuple(events[i : i + per_append])
        new = fold(batch, state)
        commits.append(Commit(job_id, state.version if state else 0, batch, new))
        state = new
    return commits


# --- appends -----------------------------------------------------------------


async def timed_appends(store: EventStore, chains: list[list[Commit]]) -> float:
    """Seconds to append every job's chain, the jobs at once, each job's commits in order."""

    async def one_job(commits: list[Commit]) -> None:
        for commit in commits:
            await store.append(commit)

    start = time.perf_counter()
    await asyncio.gather(*(one_job(c) for c in chains))
    return time.perf_counter() - start


async def clipjobs_appends(
    path: Path, chains: list[list[Commit]], synchronous: Synchronous
) -> float:
    async with SQLiteEventStore(path, synchronous=synchronous) as store:
        return await timed_appends(store, chains)


def _recorder(path: Path, synchronous: str) -> tuple[SQLiteDatastore, SQLiteApplicationRecorder]:
    class Pool(SQLiteConnectionPool):
        def _create_connection(self):  # type: ignore[no-untyped-def]
            conn = super()._create_connection()
            conn._sqlite_conn.execute(f"PRAGMA synchronous = {synchronous}")
            return conn

    datastore = SQLiteDatastore(str(path), originator_id_type="text")
    datastore.pool.close()
    datastore.pool = Pool(db_name=str(path), pool_size=16, max_overflow=100, pool_timeout=120)
    recorder = SQLiteApplicationRecorder(datastore)
    recorder.create_table()
    return datastore, recorder


def _stored(commit: Commit) -> list[StoredEvent]:
    rows = []
    for version, event in enumerate(commit.events, start=commit.expected_version + 1):
        topic, payload = encode_event(event)
        rows.append(StoredEvent(commit.job_id, version, topic, payload.encode()))
    return rows


async def eventsourcing_appends(
    path: Path, chains: list[list[Commit]], synchronous: str, threads: int
) -> float:
    datastore, recorder = _recorder(path, synchronous)
    loop = asyncio.get_running_loop()
    try:
        with ThreadPoolExecutor(threads) as pool:

            async def one_job(commits: list[Commit]) -> None:
                for commit in commits:
                    # Encoding is counted, as clipjobs encodes inside append.
                    await loop.run_in_executor(pool, recorder.insert_events, _stored(commit))

            start = time.perf_counter()
            await asyncio.gather(*(one_job(c) for c in chains))
            return time.perf_counter() - start
    finally:
        datastore.close()


def bench_appends(synchronous: Synchronous, repeats: int) -> dict[str, Any]:
    total = JOBS * APPENDS_PER_JOB

    def chains(run: int) -> list[list[Commit]]:
        return [chain(f"job_{run}_{j:04d}", APPENDS_PER_JOB) for j in range(JOBS)]

    # Give the baseline its best thread count on this machine, measured once.
    probe: dict[int, float] = {}
    for threads in (1, 4, 16, 100):
        with tempfile.TemporaryDirectory() as tmp:
            probe[threads] = asyncio.run(
                eventsourcing_appends(Path(tmp, "es.db"), chains(0), synchronous, threads)
            )
    threads = min(probe, key=lambda t: probe[t])

    base, ours, ratios = [], [], []
    for run in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:

            def baseline(tmp: str = tmp, run: int = run) -> float:
                es = eventsourcing_appends(Path(tmp, "es.db"), chains(run), synchronous, threads)
                return asyncio.run(es)

            def candidate(tmp: str = tmp, run: int = run) -> float:
                return asyncio.run(clipjobs_appends(Path(tmp, "cj.db"), chains(run), synchronous))

            # Alternate which side goes first, so drift in the machine's load favours neither.
            if run % 2 == 0:
                b, c = baseline(), candidate()
            else:
                c, b = candidate(), baseline()
        base.append(total / b)
        ours.append(total / c)
        ratios.append(b / c)
    return {
        "baseline_threads": threads,
        "thread_probe_appends_per_s": {str(t): total / secs for t, secs in probe.items()},
        "eventsourcing_appends_per_s": statistics.median(base),
        "clipjobs_appends_per_s": statistics.median(ours),
        "ratio": statistics.median(ratios),
        "ratios": ratios,
    }


def append_rows(f: dict[str, Any]) -> list[tuple[str, ...]]:
    ratio = f["ratio"]
    return [
        (
            f"eventsourcing SQLiteApplicationRecorder, {f['baseline_threads']} thread(s)"
            " (baseline)",
            f"{f['eventsourcing_appends_per_s']:,.0f} appends/s",
            "1.0x",
        ),
        (
            "clipjobs SQLiteEventStore (group commit)",
            f"{f['clipjobs_appends_per_s']:,.0f} appends/s",
            f"{ratio:.1f}x  goal >= 2x: {verdict(ratio >= 2)}",
        ),
        (
            "  (baseline thread probe, appends/s)",
            ", ".join(f"{t}: {n:,.0f}" for t, n in f["thread_probe_appends_per_s"].items()),
            "",
        ),
    ]


# --- loads -------------------------------------------------------------------


async def bench_loads(synchronous: Synchronous, repeats: int, calls: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        async with SQLiteEventStore(Path(tmp, "load.db"), synchronous=synchronous) as store:
            short, long_ = "job_1_short", "job_1_long"
            for c in chain(short, 5):
                await store.append(c)
            for c in chain(long_, 10, per_append=50):
                await store.append(c)
            # Other jobs around them, so neither sits alone in the table.
            for j in range(200):
                for c in chain(f"job_2_{j:04d}", 5):
                    await store.append(c)
            loaded = await store.load(long_)
            assert loaded is not None and loaded.version == 500

            async def rate(fn: Callable[[], Awaitable[object]], n: int) -> float:
                start = time.perf_counter()
                for _ in range(n):
                    await fn()
                return n / (time.perf_counter() - start)

            async def replay(job_id: str) -> object:
                return fold([r.event for r in await store.read(job_id)])

            s5, s500, ratios, f5, f500 = [], [], [], [], []
            for repeat in range(repeats):
                if repeat % 2 == 0:
                    a = await rate(lambda: store.load(short), calls)
                    b = await rate(lambda: store.load(long_), calls)
                else:
                    b = await rate(lambda: store.load(long_), calls)
                    a = await rate(lambda: store.load(short), calls)
                s5.append(a)
                s500.append(b)
                ratios.append(a / b)
                f5.append(await rate(lambda: replay(short), calls // 10))
                f500.append(await rate(lambda: replay(long_), calls // 50))
    return {
        "load_5_per_s": statistics.median(s5),
        "load_500_per_s": statistics.median(s500),
        # 500 events vs 5: 1.0 = the same cost; the median of paired ratios.
        "ratio": 1 / statistics.median(ratios),
        "replay_5_per_s": statistics.median(f5),
        "replay_500_per_s": statistics.median(f500),
    }


def load_rows(f: dict[str, Any]) -> list[tuple[str, ...]]:
    ratio = f["ratio"]
    return [
        ("load, job with 5 events", f"{f['load_5_per_s']:,.0f} reads/s", "1.0x"),
        (
            "load, job with 500 events",
            f"{f['load_500_per_s']:,.0f} reads/s",
            f"{ratio:.2f}x  goal ~1x: {verdict(0.85 <= ratio <= 1.15)}",
        ),
        ("  (read + fold, 5 events)", f"{f['replay_5_per_s']:,.0f} reads/s", ""),
        ("  (read + fold, 500 events)", f"{f['replay_500_per_s']:,.0f} reads/s", ""),
    ]


def main() -> None:
    parser = bench_parser(__doc__, quick=False)
    parser.add_argument("--synchronous", choices=["FULL", "NORMAL"], default="FULL")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--load-calls", type=int, default=2000)
    args = parser.parse_args()
    synchronous: Synchronous = args.synchronous
    figures = {
        "machine": machine(),
        "synchronous": synchronous,
        "repeats": args.repeats,
        "appends": bench_appends(synchronous, args.repeats),
        "loads": asyncio.run(bench_loads(synchronous, args.repeats, args.load_calls)),
    }
    rows: list[tuple[str, ...]] = [("what", "median", "ratio")]
    rows += append_rows(figures["appends"]) + load_rows(figures["loads"])
    note = (
        f"journal_mode=WAL, synchronous={args.synchronous} on both sides;"
        f" {JOBS} jobs x {APPENDS_PER_JOB} appends; medians of {args.repeats} paired repeats,"
        " which side first alternating"
    )
    print_table("SQLite store", [note], rows)
    write_json(args.json, figures)


if __name__ == "__main__":
    main()
