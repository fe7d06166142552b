"""The HTTP API under load: GET vs a bare handler, GET vs log length, runOnce and progress latency.

The server (bench/_server.py: SQLite store, workers, in-process fake Suno)
and the baseline run in their own processes; the load comes from a third
(bench/_loadgen.py), so nothing shares an event loop with the server.

1. GET job, 64 connections, 10,000 jobs stored (finished, with two tracks),
   random job each request, requests/s; against a bare aiohttp handler
   answering a constant JSON body of the same size (a real GET's body),
   timed back to back in each repeat, which side first alternating.
   Goal (issue 9): >= 0.5x its requests/s.
2. GET cost vs log length: jobs of 5 events vs jobs of 500 events, requests/s
   over HTTP. Goal: equal within noise (GET reads the projection row).
3. runOnce latency, 16 concurrent clients, each request a new channel:
   p50/p99. Goal: p99 < 20 ms (the seed promised < 2 s).
4. Progress latency: a Suno callback is appended, an SSE client of that job
   receives it; p50/p99 of (received - the job's ``updatedAt``). Baseline:
   the seed's UI polled every 3 s, a uniform 0-3 s wait (mean 1.5 s,
   p99 2.97 s) before its GET even starts. Goal: p99 < 50 ms.

Run: python bench/bench_http.py [--quick] [--json PATH]
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))
from _common import bench_parser, machine, print_table, verdict, write_json
from _loadgen import get_json, load, percentile, start
from _server import TOKEN, WEBHOOK_SECRET, suno_callback

from clipjobs.app.webhook import WebhookSigner

AUTH = {"Authorization": f"Bearer {TOKEN}"}
JOBS_API = "/api/music-clips/jobs"


def _sizes(quick: bool) -> dict[str, Any]:
    if quick:
        return {"jobs": 300, "len_jobs": 10, "duration": 0.5, "repeats": 1, "sse_jobs": 5}
    return {"jobs": 10_000, "len_jobs": 100, "duration": 3.0, "repeats": 5, "sse_jobs": 50}


def get_vs_bare(
    url: str, pid: int, paths: list[str], tmp: Path, size: dict[str, Any]
) -> dict[str, Any]:
    body = _get_body(url + paths[0])
    (tmp / "body.json").write_bytes(body)
    bare = start("bare", "--body-file", str(tmp / "body.json"), log=tmp / "bare.log")
    try:
        spec = {"connections": 64, "duration_s": size["duration"], "warmup_s": 0.5}
        base, ours, ratios, p99 = [], [], [], []
        cpu: dict[str, list[float]] = {"bare": [], "clipjobs": [], "load": []}
        busy: dict[str, list[float]] = {"bare": [], "clipjobs": []}
        for repeat in range(size["repeats"]):
            # Alternate which side goes first, so drift in the machine's load favours neither.
            sides = [(bare.url, bare.pid, "bare"), (url, pid, "clipjobs")]
            runs = {
                name: load(
                    {
                        **spec,
                        "url": to,
                        "server_pid": server,
                        "paths": paths,
                        "headers": AUTH,
                        "seed": repeat,
                    }
                )
                for to, server, name in (sides if repeat % 2 == 0 else sides[::-1])
            }
            b, c = runs["bare"], runs["clipjobs"]
            assert c["statuses"].keys() == {"200"}, c["statuses"]
            base.append(b["rps"])
            ours.append(c["rps"])
            ratios.append(c["rps"] / b["rps"])
            p99.append(c["latency_ms"]["p99"])
            for name, r in runs.items():
                # The server's CPU time per answer: what one GET costs it.
                cpu[name].append(1e6 * r["server_cpu_s"] / (r["rps"] * r["elapsed_s"]))
                busy[name].append(100 * r["server_cpu_s"] / r["elapsed_s"])
            cpu["load"].append(100 * b["load_cpu_s"] / b["elapsed_s"])
    finally:
        bare.stop()
    return {
        "body_bytes": len(body),
        "bare_rps": statistics.median(base),
        "bare_rps_lowest": min(base),
        "bare_rps_highest": max(base),
        "clipjobs_rps": statistics.median(ours),
        "ratio": statistics.median(ratios),
        "ratio_lowest": min(ratios),
        "ratio_highest": max(ratios),
        "clipjobs_p99_ms": statistics.median(p99),
        "ratios": ratios,
        "bare_cpu_us_per_request": statistics.median(cpu["bare"]),
        "clipjobs_cpu_us_per_request": statistics.median(cpu["clipjobs"]),
        "bare_cpu_percent": statistics.median(busy["bare"]),
        "clipjobs_cpu_percent": statistics.median(busy["clipjobs"]),
        # The load generator's own CPU while it drove the bare handler (its busiest side).
        "load_cpu_percent_at_bare": statistics.median(cpu["load"]),
    }


def _get_body(url: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(urllib.request.Request(url, headers=AUTH)) as r:
        return bytes(r.read())


def get_vs_length(url: str, jobs: dict[str, list[str]], size: dict[str, Any]) -> dict[str, Any]:
    spec = {"connections": 64, "duration_s": size["duration"], "warmup_s": 0.5, "headers": AUTH}
    short = [f"{JOBS_API}/{j}" for j in jobs["short"]]
    long_ = [f"{JOBS_API}/{j}" for j in jobs["long"]]
    s_rps, l_rps, ratios = [], [], []
    for repeat in range(size["repeats"]):
        sides = [(short, "short"), (long_, "long")]
        runs = {
            name: load({**spec, "url": url, "paths": paths, "seed": repeat})
            for paths, name in (sides if repeat % 2 == 0 else sides[::-1])
        }
        a, b = runs["short"], runs["long"]
        s_rps.append(a["rps"])
        l_rps.append(b["rps"])
        ratios.append(b["rps"] / a["rps"])
    return {
        "short_rps": statistics.median(s_rps),
        "long_rps": statistics.median(l_rps),
        "ratio": statistics.median(ratios),
    }


def run_once_latency(url: str, size: dict[str, Any]) -> dict[str, Any]:
    spec = {
        "url": url,
        "connections": 16,
        "duration_s": size["duration"],
        "warmup_s": 0.5,
        "method": "POST",
        "paths": ["/api/music-clips/channels/bench_{n}/runOnce"],
        "headers": AUTH,
        "body": {},
    }
    runs = []
    for repeat in range(size["repeats"]):
        # Each repeat its own channels: one active job per channel is the rule.
        result = load(
            {**spec, "paths": [f"/api/music-clips/channels/bench_{repeat}_{{n}}/runOnce"]}
        )
        assert result["statuses"].keys() == {"202"}, result["statuses"]
        runs.append(result)
    return {
        "requests": sum(r["requests"] for r in runs),
        "rps": statistics.median(r["rps"] for r in runs),
        "p50_ms": statistics.median(r["latency_ms"]["p50"] for r in runs),
        "p99_ms": statistics.median(r["latency_ms"]["p99"] for r in runs),
        "p99s_ms": [r["latency_ms"]["p99"] for r in runs],
        "p99_lowest_ms": min(r["latency_ms"]["p99"] for r in runs),
        "p99_highest_ms": max(r["latency_ms"]["p99"] for r in runs),
    }


async def _progress(url: str, jobs: list[str]) -> dict[str, Any]:
    """SSE clients on ``jobs``; callbacks posted one at a time; latencies in ms."""
    signer = WebhookSigner(WEBHOOK_SECRET)
    appended_to_seen: list[float] = []
    sent_to_seen: list[float] = []
    sent_at: dict[tuple[str, int], float] = {}
    seen: dict[str, asyncio.Queue[int]] = {j: asyncio.Queue() for j in jobs}

    async with aiohttp.ClientSession() as session:

        async def listen(job: str) -> None:
            async with session.get(f"{url}{JOBS_API}/{job}/events", headers=AUTH) as resp:
                while line := await resp.content.readline():
                    if not line.startswith(b"data: "):
                        continue
                    now = time.time()
                    body = json.loads(line[6:])
                    version = int(body["version"])
                    updated = datetime.fromisoformat(body["updatedAt"].replace("Z", "+00:00"))
                    if (job, version) in sent_at:
                        appended_to_seen.append((now - updated.timestamp()) * 1000)
                        sent_to_seen.append((now - sent_at[job, version]) * 1000)
                    seen[job].put_nowait(version)

        listeners = [asyncio.create_task(listen(j)) for j in jobs]
        try:
            versions = {j: await asyncio.wait_for(seen[j].get(), 10) for j in jobs}
            for stage in ("first", "complete"):
                for job in jobs:
                    payload = suno_callback(job, stage)
                    versions[job] += 1
                    sent_at[job, versions[job]] = time.time()
                    async with session.post(
                        f"{url}/api/webhooks/suno/music",
                        params={"job": job, "token": signer.token(job)},
                        json=payload,
                    ) as resp:
                        assert resp.status == 200, await resp.text()
                    got = await asyncio.wait_for(seen[job].get(), 10)
                    assert got == versions[job], (got, versions[job])
                    await asyncio.sleep(0.005)
        finally:
            for listener in listeners:
                listener.cancel()
            await asyncio.gather(*listeners, return_exceptions=True)
    p99 = percentile(appended_to_seen, 99)
    return {
        "samples": len(appended_to_seen),
        "p50_ms": percentile(appended_to_seen, 50),
        "p99_ms": p99,
        # The seed's polling p99 (2,970 ms) over this.
        "sooner_at_p99": 2970.0 / p99 if p99 > 0 else float("inf"),
        "callback_sent_p99_ms": percentile(sent_to_seen, 99),
        # The seed's UI: a uniform 0-3 s wait for the next poll, before its GET.
        "polling_mean_ms": 1500.0,
        "polling_p99_ms": 2970.0,
    }


def run(quick: bool) -> dict[str, Any]:
    size = _sizes(quick)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        server = start(
            "clipjobs",
            "--db",
            str(tmp / "http.db"),
            "--seed-done",
            str(size["jobs"]),
            "--seed-short",
            str(size["len_jobs"]),
            "--seed-long",
            str(size["len_jobs"]),
            log=tmp / "server.log",
        )
        try:
            jobs = get_json(server.url + "/_bench/info")["jobs"]
            paths = [f"{JOBS_API}/{j}" for j in jobs["done"]]
            results = {
                "machine": machine(),
                "sizes": size,
                "seed_s": server.info["seed_s"],
                "get": get_vs_bare(server.url, server.pid, paths, tmp, size),
                "get_length": get_vs_length(server.url, jobs, size),
                "progress": asyncio.run(_progress(server.url, jobs["short"][: size["sse_jobs"]])),
                "run_once": run_once_latency(server.url, size),
            }
        finally:
            server.stop()
    return results


def rows(r: dict[str, Any]) -> list[tuple[str, ...]]:
    g, n, o, p = r["get"], r["get_length"], r["run_once"], r["progress"]
    jobs = r["sizes"]["jobs"]
    return [
        ("what", "figure", "vs baseline / goal"),
        (
            f"bare aiohttp handler, constant {g['body_bytes']} B JSON (baseline)",
            f"{g['bare_rps']:,.0f} req/s ({g['bare_cpu_us_per_request']:.0f} µs CPU each)",
            "1.0x",
        ),
        (
            f"GET job, 64 connections, {jobs:,} jobs stored",
            f"{g['clipjobs_rps']:,.0f} req/s (p99 {g['clipjobs_p99_ms']:.1f} ms;"
            f" {g['clipjobs_cpu_us_per_request']:.0f} µs CPU each)",
            f"{g['ratio']:.2f}x ({g['ratio_lowest']:.2f}-{g['ratio_highest']:.2f})"
            f"  goal >= 0.5x: {verdict(g['ratio'] >= 0.5)}",
        ),
        ("GET job with 5 events", f"{n['short_rps']:,.0f} req/s", "1.0x"),
        (
            "GET job with 500 events",
            f"{n['long_rps']:,.0f} req/s",
            f"{n['ratio']:.2f}x  goal ~1x: {verdict(0.85 <= n['ratio'] <= 1.15)}",
        ),
        (
            "runOnce, 16 concurrent clients",
            f"p50 {o['p50_ms']:.1f} ms, p99 {o['p99_ms']:.1f} ms ({o['rps']:,.0f} req/s;"
            f" p99 per repeat {', '.join(f'{x:.0f}' for x in o['p99s_ms'])})",
            f"goal p99 < 20 ms: {verdict(o['p99_ms'] < 20)}",
        ),
        (
            "progress: seed's 3 s polling (baseline, computed)",
            f"mean {p['polling_mean_ms']:.0f} ms, p99 {p['polling_p99_ms']:.0f} ms",
            "",
        ),
        (
            f"progress: appended -> SSE client ({p['samples']} events)",
            f"p50 {p['p50_ms']:.1f} ms, p99 {p['p99_ms']:.1f} ms",
            f"{p['sooner_at_p99']:.0f}x sooner at p99; goal p99 < 50 ms: "
            f"{verdict(p['p99_ms'] < 50)}",
        ),
    ]


def main() -> None:
    args = bench_parser(__doc__).parse_args()
    results = run(args.quick)
    size = results["sizes"]
    note = (
        "server, baseline and load generator in separate processes; medians of "
        f"{size['repeats']} paired repeats of {size['duration']:g} s"
    )
    print_table("HTTP API", [note], rows(results))
    write_json(args.json, results)


if __name__ == "__main__":
    main()
