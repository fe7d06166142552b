"""10,000 active jobs against the fake Suno with the default budget, and a restart with 1,000.

Processes: the fake Suno (bench/_server.py fake, Suno's own limit of 20
calls per 10 s, recording when each call arrived), the clipjobs server
(bench/_server.py clipjobs: SQLite, workers, ``CLIPJOBS_SUNO_MAX_RPS=2``),
and the load generator (bench/_loadgen.py); this process only watches.

1. Load (issue 6 / 9): 10,000 jobs at Suno, all due for a poll, so the
   poller wants far more than the budget gives; meanwhile GETs of random
   jobs at a fixed rate (open loop, latency from the scheduled time).
   Figures: GET p50/p99, the server's resident memory from /proc (now and
   peak), the most Suno calls in any 10 s as the budget counted them and as
   the fake received them, and the fake's 430 answers.
   Goals: GET p99 < 50 ms, RSS < 300 MB, the budget never exceeded.
2. Restart: 1,000 unfinished jobs (due for a poll) are in the database of a
   server that is killed with SIGKILL; a new server starts on the same file
   with the same ``CLIPJOBS_WORKER_ID``. Figure: seconds from its start until
   every one of the 1,000 jobs has a new event (read from the SQLite file).
   Goal: all resumed within 5 s. With the default budget this is Suno-bound
   (1,000 polls at 2/s is 500 s), so it is measured with a budget that does
   not bind (``CLIPJOBS_SUNO_MAX_RPS=1000``), and the default budget's first
   5 s are reported beside it.

Run: python bench/bench_load.py [--quick] [--json PATH]
"""

from __future__ import annotations

import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import bench_parser, machine, print_table, verdict, write_json
from _loadgen import RssSampler, Server, get_json, load, rss_mb, start
from _server import TOKEN, peak

from clipjobs_sqlite._schema import ts

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _sizes(quick: bool) -> dict[str, Any]:
    if quick:
        return {
            "jobs": 500,
            "duration": 3.0,
            "rate": 200,
            "restart_jobs": 100,
            "watch": 5.0,
            "default_watch": 2.0,
        }
    return {
        "jobs": 10_000,
        "duration": 60.0,
        "rate": 1000,
        "restart_jobs": 1000,
        "watch": 30.0,
        "default_watch": 5.5,
    }


def load_test(tmp: Path, size: dict[str, Any]) -> dict[str, Any]:
    fake = start("fake", log=tmp / "fake.log")
    server: Server | None = None
    try:
        server = start(
            "clipjobs",
            "--db",
            str(tmp / "load.db"),
            "--seed-active",
            str(size["jobs"]),
            "--fake-url",
            fake.url,
            log=tmp / "load.log",
        )
        rss_after_seed = rss_mb(server.pid)
        jobs = get_json(server.url + "/_bench/info")["jobs"]["active"]
        sampler = RssSampler(server.pid)
        sampler.start()
        began = time.time()
        result = load(
            {
                "url": server.url,
                "connections": 32,
                "duration_s": size["duration"],
                "warmup_s": 1.0,
                "rate": size["rate"],
                "paths": [f"/api/music-clips/jobs/{j}" for j in jobs],
                "headers": AUTH,
            }
        )
        sampler.done.set()
        sampler.join()
        rss_now, rss_peak = rss_mb(server.pid)
        info = get_json(server.url + "/_bench/info")
        calls = get_json(fake.url + "/_fake/arrivals")
    finally:
        if server is not None:
            server.stop()
        fake.stop()
    budget = info["budget"]
    arrivals = [t for t in calls["admitted"] + calls["refused"] if t >= began - 1]
    return {
        "jobs": size["jobs"],
        "seed_s": server.info["seed_s"],
        "get_rate": size["rate"],
        "get": {
            "requests": result["requests"],
            "errors": result["errors"],
            "late": result["late"],
            "unfinished": result["unfinished"],
            "statuses": result["statuses"],
            "rps": result["rps"],
            "p50_ms": result["latency_ms"]["p50"],
            "p99_ms": result["latency_ms"]["p99"],
            "max_ms": result["latency_ms"]["max"],
        },
        "rss_mb": {
            "after_seed": rss_after_seed[0],
            "end": rss_now,
            "peak": max(rss_peak, sampler.peak),
            "median": statistics.median(sampler.samples) if sampler.samples else rss_now,
        },
        "suno": {
            "limit": budget["limit"],
            "window_s": budget["window_s"],
            "budget_peak": budget["peak"],
            "fake_peak": peak(arrivals, calls["rate_window_s"]),
            "fake_calls": len(arrivals),
            "fake_refused_430": len([t for t in calls["refused"] if t >= began - 1]),
            "budget_started": budget["started"],
            "budget_slowdowns": budget["slowdowns"],
            "waiting_polls": budget["waiting"],
            "seconds": size["duration"] + 1,
        },
    }


def _resumed(db: Path, since: datetime) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        row = conn.execute(
            "SELECT count(DISTINCT job_id) FROM events WHERE recorded_at > ?", (ts(since),)
        ).fetchone()
        return int(row[0])
    finally:
        conn.close()


def restart_test(tmp: Path, size: dict[str, Any], max_rps: float | None) -> dict[str, Any]:
    """Seed, SIGKILL, restart; how long until every job has a new event."""
    label = "fast" if max_rps else "default"
    db = tmp / f"restart-{label}.db"
    rate_limit = "100000" if max_rps else "20"
    fake = start("fake", "--rate-limit", rate_limit, log=tmp / f"fake-{label}.log")
    budget = ["--max-rps", str(max_rps)] if max_rps else []
    common = ["--db", str(db), "--fake-url", fake.url, "--worker-id", "bench-restart", *budget]
    try:
        first = start(
            "clipjobs",
            *common,
            "--seed-active",
            str(size["restart_jobs"]),
            "--no-workers",
            log=tmp / f"restart-{label}-1.log",
        )
        first.stop(signal.SIGKILL)
        started = datetime.now(UTC)
        t0 = time.perf_counter()
        second = start("clipjobs", *common, log=tmp / f"restart-{label}-2.log")
        listening_s = time.perf_counter() - t0
        total = size["restart_jobs"]
        all_s: float | None = None
        in_5s = 0
        curve: list[tuple[float, int]] = []
        try:
            while (elapsed := time.perf_counter() - t0) < size["watch"]:
                done = _resumed(db, started)
                curve.append((round(elapsed, 2), done))
                if elapsed <= 5.0:
                    in_5s = done
                if done >= total:
                    all_s = elapsed
                    break
                if not max_rps and elapsed > size["default_watch"]:
                    break  # budget-bound: the rest only confirms 2 polls/s
                time.sleep(0.05)
        finally:
            second.stop()
    finally:
        fake.stop()
    return {
        "jobs": total,
        "max_rps": max_rps or 2.0,
        "listening_s": listening_s,
        "all_resumed_s": all_s,
        "resumed_within_5s": in_5s,
        # The least the budget allows: one poll per job at max_rps.
        "budget_bound_s": total / (max_rps or 2.0),
        "curve": curve[:: max(1, len(curve) // 20)],
    }


def run(quick: bool) -> dict[str, Any]:
    size = _sizes(quick)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        return {
            "machine": machine(),
            "sizes": size,
            "load": load_test(tmp, size),
            "restart_fast": restart_test(tmp, size, 1000.0),
            "restart_default": restart_test(tmp, size, None),
        }


def rows(r: dict[str, Any]) -> list[tuple[str, ...]]:
    ld, g, m, s = r["load"], r["load"]["get"], r["load"]["rss_mb"], r["load"]["suno"]
    fast, slow = r["restart_fast"], r["restart_default"]
    exceeded = max(s["budget_peak"], s["fake_peak"]) > s["limit"] or s["fake_refused_430"] > 0
    all_s = fast["all_resumed_s"]
    return [
        ("what", "figure", "goal"),
        (
            f"{ld['jobs']:,} active jobs: GET at {ld['get_rate']:,} req/s (open loop)",
            f"p50 {g['p50_ms']:.1f} ms, p99 {g['p99_ms']:.1f} ms, max {g['max_ms']:.0f} ms"
            f" ({g['requests']:,} requests, {g['errors']} errors,"
            f" {g['late'] + g['unfinished']} answered after the window)",
            f"p99 < 50 ms: {verdict(g['p99_ms'] < 50)}",
        ),
        (
            "  server RSS (/proc VmRSS): after seeding, median, peak",
            f"{m['after_seed']:.0f} MB, {m['median']:.0f} MB, {m['peak']:.0f} MB",
            f"< 300 MB: {verdict(m['peak'] < 300)}",
        ),
        (
            f"  Suno calls in {s['seconds']:.0f} s: most in any {s['window_s']:g} s",
            f"budget's record {s['budget_peak']}, fake received {s['fake_peak']}"
            f" (limit {s['limit']}); {s['fake_refused_430']} answered 430",
            f"never exceeded: {verdict(not exceeded)}",
        ),
        (
            "  Suno calls by kind (budget)",
            ", ".join(f"{k.lower()} {v}" for k, v in s["budget_started"].items())
            + f"; {s['waiting_polls']} polls waiting at the end",
            "",
        ),
        (
            f"restart, {fast['jobs']:,} unfinished jobs, budget not binding",
            f"listening after {fast['listening_s']:.2f} s; all resumed after "
            + (f"{all_s:.2f} s" if all_s is not None else f"> {r['sizes']['watch']:g} s"),
            f"all within 5 s: {verdict(all_s is not None and all_s <= 5)}",
        ),
        (
            f"restart, {slow['jobs']:,} unfinished jobs, default budget (2/s)",
            f"{slow['resumed_within_5s']} resumed within"
            f" {min(5.0, r['sizes']['default_watch']):g} s"
            f" (Suno-bound: all need {slow['jobs'] / slow['max_rps']:.0f} s of budget)",
            "",
        ),
    ]


def main() -> None:
    args = bench_parser(__doc__).parse_args()
    results = run(args.quick)
    note = (
        "fake Suno, server and load generator in separate processes;"
        f" default budget CLIPJOBS_SUNO_MAX_RPS=2 unless said; {results['sizes']['duration']:g} s"
    )
    print_table("Load and restart", [note], rows(results))
    write_json(args.json, results)


if __name__ == "__main__":
    main()
