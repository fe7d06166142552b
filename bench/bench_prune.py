"""Retention and export at scale (issue 20): GET latency while pruning, export's memory.

1. A SQLite store holds N old finished jobs (default 10,000) and 50 recent ones;
   ``clipjobs serve``'s composition starts on it with ``CLIPJOBS_RETENTION_DAYS=30``,
   so its pruner deletes the old ones in batches while clients GET the recent ones
   over HTTP. Reported: GET p50/p99 during pruning and how long pruning took.
   Goal: p99 < 50 ms.
2. ``clipjobs export`` of M jobs (default 100,000, and a tenth of that for
   contrast) as a subprocess, its output parsed line by line as it streams:
   peak RSS of the exporter. Goal: about the same at both sizes (flat memory).

Run: python bench/bench_prune.py [--quick] [--jobs N] [--export-jobs M] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, table

from clipjobs.app.config import Settings
from clipjobs.domain.commands import FailJob
from clipjobs.testing import new_job, step
from clipjobs_cli import running_server
from clipjobs_sqlite import SQLiteEventStore

OLD = datetime(2025, 1, 1, tzinfo=UTC)
TOKEN = "bench-prune-token"
USER = "bench"


async def populate(path: Path, old: int, recent: int) -> list[str]:
    """``old`` finished jobs long ago and ``recent`` finished now; the recent ids."""
    now = datetime.now(UTC)
    async with await SQLiteEventStore.open(path) as store:

        async def one(at: datetime) -> str:
            c = new_job(at=at, user_id=USER)
            await store.append(c)
            await store.append(step(c.state, FailJob("X", "bench", at)))
            return c.job_id

        for start in range(0, old, 500):
            await asyncio.gather(
                *(one(OLD + timedelta(seconds=i)) for i in range(start, min(old, start + 500)))
            )
        return list(await asyncio.gather(*(one(now) for _ in range(recent))))


async def gets_while_pruning(jobs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        targets = await populate(db, jobs, 50)
        settings = Settings(
            db_url=f"sqlite:///{db}",
            port=0,
            tokens={TOKEN: USER},
            media_dir=Path(tmp) / "media",
            retention_days=30,
            log_level="WARNING",
        )
        latencies: list[float] = []
        started = time.perf_counter()
        async with (
            running_server(settings) as server,
            aiohttp.ClientSession() as http,
            await SQLiteEventStore.open(db) as store,
        ):
            headers = {"Authorization": f"Bearer {TOKEN}"}
            i = 0
            while True:
                job_id = targets[i % len(targets)]
                i += 1
                t0 = time.perf_counter()
                async with http.get(
                    f"{server.url}/api/music-clips/jobs/{job_id}", headers=headers
                ) as r:
                    await r.read()
                    assert r.status == 200
                latencies.append(time.perf_counter() - t0)
                if i % 50 == 0:
                    cut = datetime.now(UTC) - timedelta(days=30)
                    if not await store.prune_candidates(cut, 1):
                        break
            took = time.perf_counter() - started
    q = statistics.quantiles(latencies, n=100)
    return {
        "jobs_pruned": jobs,
        "gets": len(latencies),
        "get_p50_ms": q[49] * 1000,
        "get_p99_ms": q[98] * 1000,
        "prune_s": took,
    }


def export_rss(path: Path, expected: int) -> dict[str, Any]:
    """Run ``clipjobs export`` on ``path``; parse each line as it comes; its peak RSS."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLIPJOBS_", "SUNO_"))}
    env["CLIPJOBS_DB"] = f"sqlite:///{path}"
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "clipjobs_cli", "export"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    lines = 0
    for line in proc.stdout:
        json.loads(line)
        lines += 1
    proc.wait()
    took = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    assert proc.returncode == 0 and lines == expected, (proc.returncode, lines, expected)
    return {"jobs": lines, "peak_rss_mib": max(peak_kib, before) / 1024, "seconds": took}


async def export_bench(big: int) -> list[dict[str, Any]]:
    out = []
    for size in (max(1, big // 10), big):
        with tempfile.TemporaryDirectory() as tmp:
            db = Path(tmp) / "export.db"
            await populate(db, size, 0)
            # Each size in a fresh child: RUSAGE_CHILDREN keeps the largest child's peak.
            result = await asyncio.to_thread(export_rss, db, size)
            out.append(result)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smallest sizes (a smoke test)")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--export-jobs", type=int, default=100_000)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    jobs, export_jobs = (500, 1000) if args.quick else (args.jobs, args.export_jobs)

    print(f"# bench_prune on {machine()}")
    pruning = asyncio.run(gets_while_pruning(jobs))
    print(
        table(
            [
                ("old jobs pruned", "GETs", "GET p50 ms", "GET p99 ms", "pruning took s"),
                (
                    str(pruning["jobs_pruned"]),
                    str(pruning["gets"]),
                    f"{pruning['get_p50_ms']:.2f}",
                    f"{pruning['get_p99_ms']:.2f} (goal < 50)",
                    f"{pruning['prune_s']:.1f}",
                ),
            ]
        )
    )
    exports = asyncio.run(export_bench(export_jobs))
    print()
    print(
        table(
            [("jobs exported", "peak RSS MiB", "seconds")]
            + [(str(e["jobs"]), f"{e['peak_rss_mib']:.1f}", f"{e['seconds']:.1f}") for e in exports]
        )
    )
    print("(export peak RSS: about the same at both sizes = memory stays flat)")
    if args.json is not None:
        args.json.write_text(json.dumps({"pruning": pruning, "export": exports}, indent=2))


if __name__ == "__main__":
    main()
