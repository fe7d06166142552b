"""The PostgreSQL store against the SQLite store, in the same run on the same machine.

1. appends/s with 100 jobs appending at once (5 appends a job, each decided on
   the previous one, as JobService does): ``PostgresEventStore`` (pool of
   ``--pool`` connections, a fresh schema each repeat) vs ``SQLiteEventStore``
   (WAL, ``synchronous=FULL``, a fresh file each repeat), timed back to back.
2. view reads/s: ``load`` (the projection row, what GET /jobs/{id} reads) one
   at a time, and 100 at once, on both stores.

The ratio column is PostgreSQL / SQLite (above 1 means PostgreSQL is faster).
PostgreSQL's own durability settings apply (``synchronous_commit`` is shown).

Run: python bench/bench_postgres.py [--dsn postgresql://…] [--repeats 7]
(the DSN defaults to CLIPJOBS_BENCH_PG_DSN, then CLIPJOBS_TEST_PG_DSN).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

sys.path.insert(0, str(Path(__file__).parent))
from _common import parse_with_dsn, print_table
from bench_sqlite import APPENDS_PER_JOB, JOBS, chain, clipjobs_appends, timed_appends

from clipjobs import Commit
from clipjobs.app.ports import EventStore
from clipjobs_postgres import PostgresEventStore
from clipjobs_sqlite import SQLiteEventStore

READ_JOBS = 200


def _schema() -> str:
    return f"bench_{secrets.token_hex(4)}"


async def pg_appends(dsn: str, pool: int, chains: list[list[Commit]]) -> float:
    store = await PostgresEventStore.open(dsn, _schema(), min_size=pool, max_size=pool)
    try:
        return await timed_appends(store, chains)
    finally:
        await store.drop_schema()
        await store.aclose()


def bench_appends(dsn: str, pool: int, repeats: int) -> list[tuple[str, ...]]:
    total = JOBS * APPENDS_PER_JOB

    def chains(run: int, side: str) -> list[list[Commit]]:
        return [chain(f"job_{side}{run}_{j:04d}", APPENDS_PER_JOB) for j in range(JOBS)]

    asyncio.run(pg_appends(dsn, pool, chains(99, "w")))  # warm the server's caches once
    sq, pg, ratios = [], [], []
    for run in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            s = asyncio.run(clipjobs_appends(Path(tmp, "bench.db"), chains(run, "s"), "FULL"))
        p = asyncio.run(pg_appends(dsn, pool, chains(run, "p")))
        sq.append(total / s)
        pg.append(total / p)
        ratios.append(s / p)
    return [
        (
            f"SQLiteEventStore, {JOBS} jobs x {APPENDS_PER_JOB} appends at once",
            f"{statistics.median(sq):,.0f} appends/s",
            "1.0x",
        ),
        (
            f"PostgresEventStore (pool {pool}), the same",
            f"{statistics.median(pg):,.0f} appends/s",
            f"{statistics.median(ratios):.2f}x",
        ),
    ]


async def _fill(store: EventStore) -> list[str]:
    ids = []
    for j in range(READ_JOBS):
        commits = chain(f"job_r_{j:04d}", APPENDS_PER_JOB)
        for commit in commits:
            await store.append(commit)
        ids.append(commits[0].job_id)
    return ids


async def _sequential(store: EventStore, ids: list[str], calls: int) -> float:
    start = time.perf_counter()
    for i in range(calls):
        await store.load(ids[i % len(ids)])
    return calls / (time.perf_counter() - start)


async def _concurrent(store: EventStore, ids: list[str], rounds: int) -> float:
    batch = ids[:100]
    start = time.perf_counter()
    for _ in range(rounds):
        await asyncio.gather(*(store.load(job) for job in batch))
    return rounds * len(batch) / (time.perf_counter() - start)


async def bench_reads(dsn: str, pool: int, repeats: int, calls: int) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    with tempfile.TemporaryDirectory() as tmp:
        async with SQLiteEventStore(Path(tmp, "reads.db"), synchronous="FULL") as sqlite:
            pg = await PostgresEventStore.open(dsn, _schema(), min_size=pool, max_size=pool)
            try:
                sq_ids, pg_ids = await _fill(sqlite), await _fill(pg)
                kinds: list[tuple[str, Callable[[EventStore, list[str]], Awaitable[float]]]] = [
                    ("load one at a time", lambda s, i: _sequential(s, i, calls)),
                    ("load, 100 at once", lambda s, i: _concurrent(s, i, max(1, calls // 100))),
                ]
                for name, run in kinds:
                    await run(sqlite, sq_ids)  # warm-up
                    await run(pg, pg_ids)
                    s_rates, p_rates, ratios = [], [], []
                    for _ in range(repeats):
                        s = await run(sqlite, sq_ids)
                        p = await run(pg, pg_ids)
                        s_rates.append(s)
                        p_rates.append(p)
                        ratios.append(p / s)
                    rows += [
                        (f"SQLite, {name}", f"{statistics.median(s_rates):,.0f} reads/s", "1.0x"),
                        (
                            f"PostgreSQL, {name}",
                            f"{statistics.median(p_rates):,.0f} reads/s",
                            f"{statistics.median(ratios):.2f}x",
                        ),
                    ]
            finally:
                await pg.drop_schema()
                await pg.aclose()
    return rows


async def server_facts(dsn: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        version = await conn.fetchval("SHOW server_version")
        sync = await conn.fetchval("SHOW synchronous_commit")
        fsync = await conn.fetchval("SHOW fsync")
    finally:
        await conn.close()
    where = urlsplit(dsn)
    return (
        f"PostgreSQL {version} at {where.hostname}:{where.port or 5432},"
        f" synchronous_commit={sync}, fsync={fsync}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=int, default=10, help="PostgreSQL pool size (default 10)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--read-calls", type=int, default=2000)
    args = parse_with_dsn(parser)
    rows: list[tuple[str, ...]] = [("what", "median", "PostgreSQL / SQLite")]
    rows += bench_appends(args.dsn, args.pool, args.repeats)
    rows += asyncio.run(bench_reads(args.dsn, args.pool, args.repeats, args.read_calls))
    method = (
        f"SQLite: WAL, synchronous=FULL; medians of {args.repeats} paired repeats,"
        " a fresh schema / file per append repeat"
    )
    print_table("PostgreSQL vs SQLite store", [asyncio.run(server_facts(args.dsn)), method], rows)


if __name__ == "__main__":
    main()
