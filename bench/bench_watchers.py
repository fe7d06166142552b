"""Many watchers on one process: 5,000 SSE clients, each on its own job, vs them polling GET.

One clipjobs server (bench/_server.py: SQLite, workers, in-process fake Suno)
with 5,000 active jobs; 5,000 watchers in one load process (bench/_watchers.py,
raw asyncio sockets), one per job; 100 job updates per second (Suno progress
callbacks to the webhook, each for a random job, open loop) for 30 s.

- SSE: every watcher holds ``GET /jobs/{id}/events`` open.
- Baseline: every watcher polls ``GET /jobs/{id}`` every 3 s at its own phase,
  as the seed's UI did (1,667 requests/s for 5,000 watchers).

Figures for each: the p50/p99/max from a change's append to its watcher
seeing it (the job's ``updatedAt``, decided just before the append, to the
moment the watcher read it; and from the update's scheduled post, which counts
the webhook too; an update not seen 5 s after the window counts with the
latency it had by then); the server's CPU time over the window (``/proc``) per
change its watchers saw; its resident memory after seeding and at its peak
(VmHWM, a fresh server per side). Goal: SSE delivers sooner than polling at
less CPU per change seen.

Run: python bench/bench_watchers.py [--quick] [--repeats N] [--json PATH]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import bench_parser, machine, print_table, write_json
from _loadgen import RssSampler, get_json, rss_mb, start
from _server import TOKEN, WEBHOOK_SECRET

HERE = Path(__file__).resolve().parent
MODES = ("poll", "sse")


def _sizes(quick: bool) -> dict[str, Any]:
    if quick:
        return {"watchers": 200, "rate": 20, "warmup_s": 3.5, "duration_s": 3.0, "drain_s": 3.0}
    return {"watchers": 5000, "rate": 100, "warmup_s": 4.0, "duration_s": 30.0, "drain_s": 5.0}


def watch(mode: str, size: dict[str, Any], tmp: Path, repeat: int) -> dict[str, Any]:
    """One side on a fresh server: seed, connect the watchers, update, measure."""
    server = start(
        "clipjobs",
        "--db",
        str(tmp / f"{mode}-{repeat}.db"),
        "--seed-short",
        str(size["watchers"]),
        # One connection per watcher, plus the posters': over the default 1,000 the server
        # would answer 503 and the watchers past it would never see their first state.
        "--max-connections",
        str(size["watchers"] + 100),
        log=tmp / f"{mode}-{repeat}.log",
    )
    try:
        jobs = get_json(server.url + "/_bench/info")["jobs"]["short"]
        seeded_mb = rss_mb(server.pid)[0]
        sampler = RssSampler(server.pid)
        sampler.start()
        spec = {
            "url": server.url,
            "token": TOKEN,
            "secret": WEBHOOK_SECRET,
            "jobs": jobs,
            "mode": mode,
            "rate": size["rate"],
            "warmup_s": size["warmup_s"],
            "duration_s": size["duration_s"],
            "drain_s": size["drain_s"],
            "poll_every_s": 3.0,
            "server_pid": server.pid,
        }
        done = subprocess.run(
            [sys.executable, str(HERE / "_watchers.py")],
            input=json.dumps(spec),
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"_watchers.py failed: {done.stderr[-3000:]}")
        sampler.done.set()
        sampler.join()
        peak_mb = max(rss_mb(server.pid)[1], sampler.peak)
    finally:
        server.stop()
    result: dict[str, Any] = json.loads(done.stdout)
    seen = max(1, result["changes_seen"])
    result |= {
        "server_rss_mb": {
            "after_seeding": seeded_mb,
            "median_while_watched": statistics.median(sampler.samples or [seeded_mb]),
            "peak": peak_mb,
        },
        "server_cpu_percent": 100 * result["server_cpu_s"] / result["window_s"],
        "server_cpu_ms_per_change_seen": 1000 * result["server_cpu_s"] / seen,
    }
    return result


def run(quick: bool, repeats: int) -> dict[str, Any]:
    size = _sizes(quick)
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for repeat in range(repeats):
            # Alternate which side goes first, so drift in the machine's load favours neither.
            for mode in MODES if repeat % 2 == 0 else MODES[::-1]:
                runs[mode].append(watch(mode, size, tmp, repeat))

    def median_of(mode: str, *path: str) -> float:
        values = []
        for r in runs[mode]:
            value: Any = r
            for key in path:
                value = value[key]
            values.append(float(value))
        return statistics.median(values)

    figures: dict[str, Any] = {"machine": machine(), "sizes": size, "repeats": repeats}
    for mode in MODES:
        figures[mode] = {
            "appended_to_seen_ms": {
                q: median_of(mode, "appended_to_seen_ms", q) for q in ("p50", "p99", "max")
            },
            "posted_to_seen_ms": {
                q: median_of(mode, "posted_to_seen_ms", q) for q in ("p50", "p99", "max")
            },
            "changes_seen": median_of(mode, "changes_seen"),
            "updates_posted": median_of(mode, "updates_posted"),
            "updates_answered": median_of(mode, "updates_answered"),
            "post_p99_ms": median_of(mode, "post_ms", "p99"),
            "unseen_updates": median_of(mode, "unseen_updates"),
            "post_errors": median_of(mode, "post_errors"),
            "server_cpu_percent": median_of(mode, "server_cpu_percent"),
            "server_cpu_ms_per_change_seen": median_of(mode, "server_cpu_ms_per_change_seen"),
            "server_rss_mb": {
                k: median_of(mode, "server_rss_mb", k)
                for k in ("after_seeding", "median_while_watched", "peak")
            },
            "load_cpu_percent": median_of(mode, "load_cpu_s") / median_of(mode, "window_s") * 100,
            "runs": runs[mode],
        }
    poll, sse = figures["poll"], figures["sse"]
    figures["ratios"] = {
        "p99_sooner": poll["appended_to_seen_ms"]["p99"] / sse["appended_to_seen_ms"]["p99"],
        "cpu_per_change": poll["server_cpu_ms_per_change_seen"]
        / sse["server_cpu_ms_per_change_seen"],
    }
    return figures


def rows(r: dict[str, Any]) -> list[tuple[str, ...]]:
    n, rate = r["sizes"]["watchers"], r["sizes"]["rate"]
    out = [("what", "append -> seen", "posted -> seen", "server CPU", "server RSS", "vs baseline")]
    for mode, name in (
        ("poll", f"{n:,} watchers polling GET every 3 s (baseline)"),
        ("sse", f"{n:,} SSE watchers"),
    ):
        f = r[mode]
        a, p, m = f["appended_to_seen_ms"], f["posted_to_seen_ms"], f["server_rss_mb"]
        versus = "1.0x"
        if mode == "sse":
            versus = (
                f"{r['ratios']['p99_sooner']:.0f}x sooner at p99, "
                f"{r['ratios']['cpu_per_change']:.1f}x less CPU per change"
            )
        out.append(
            (
                name,
                f"p50 {a['p50']:.0f} ms, p99 {a['p99']:.0f} ms, max {a['max']:.0f} ms",
                f"p99 {p['p99']:.0f} ms ({f['unseen_updates']:.0f} unseen)",
                f"{f['server_cpu_percent']:.0f}% of a core, "
                f"{f['server_cpu_ms_per_change_seen']:.2f} ms per change seen",
                f"{m['after_seeding']:.0f} MB seeded, {m['peak']:.0f} MB peak",
                versus,
            )
        )
    for mode in MODES:
        f = r[mode]
        out.append(
            (
                f"  ({mode}: {f['updates_posted']:.0f} updates posted at {rate}/s, webhook p99"
                f" {f['post_p99_ms']:.0f} ms, {f['updates_answered']:.0f} answered;"
                f" {f['changes_seen']:.0f} changes seen; load process"
                f" {f['load_cpu_percent']:.0f}% of a core)",
                "",
                "",
                "",
                "",
                "",
            )
        )
    return out


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    results = run(args.quick, args.repeats)
    size = results["sizes"]
    note = (
        f"one server, {size['watchers']:,} jobs, one watcher each; {size['rate']} updates/s for"
        f" {size['duration_s']:g} s; a fresh server per side; medians of {results['repeats']}"
        " repeat(s), sides alternating"
    )
    print_table("Many watchers", [note], rows(results))
    write_json(args.json, results)


if __name__ == "__main__":
    main()
