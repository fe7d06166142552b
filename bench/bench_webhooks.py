"""Webhooks fan-out: 1,000 jobs finishing within a few seconds, 5 subscribers each.

One clipjobs (``running_server``: SQLite, workers, the API and the webhook
sender, as ``clipjobs serve`` runs it) in this process; the receiver, an
aiohttp app answering 200 at once, in a process of its own. The jobs are
made and brought to "Suno task created" before the clock starts; then each
is finished (Suno's success observed, committed through the store like a
worker's commit) on an open-loop schedule spread over ``--window`` seconds,
while four clients GET random jobs back to back.

Figures, for each side of a pair run back to back on fresh databases:
- with 5 subscribers: p50/p99/max from a job's commit (when its append
  returned) to the receiver answering 200 to its event (the first 2xx of each
  delivery; wall clock, one machine), and how many deliveries arrived;
- GET /jobs/{id}: p50/p99 over the window, with subscribers and without
  (the same jobs, the same finishing schedule). Goal: every delivery arrives,
  p99 commit→200 within a few seconds of the window, GET p99 not markedly worse.

Run: python bench/bench_webhooks.py [--quick] [--jobs N] [--subscribers N]
                                    [--window S] [--repeats N] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, table

from clipjobs import decide, fold
from clipjobs.app.config import Settings
from clipjobs.app.ids import new_job_id, new_request_id
from clipjobs.app.ports import Commit, EventStore
from clipjobs.domain.commands import MarkRequestSent, RecordObservation, RecordTaskCreated, StartJob
from clipjobs.domain.events import GenerationParams, Observation, ProviderStatus, Source, Track
from clipjobs.domain.state import JobState
from clipjobs_cli._serve import running_server

TOKEN = "bench-webhooks-token-1"
USER = "bench-user"

RECEIVER = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from aiohttp import web

    arrivals = []

    async def hook(request):
        body = await request.json()
        arrivals.append((request.headers["webhook-id"], body["data"]["jobId"], time.time()))
        return web.Response(text="ok")

    async def results(request):
        return web.json_response(arrivals)

    async def main():
        app = web.Application()
        app.router.add_post("/hook", hook)
        app.router.add_get("/results", results)
        app.router.add_post("/reset", lambda r: (arrivals.clear(), web.Response())[1])
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        print(runner.addresses[0][1], flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
    """
)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _seed(store: EventStore, n: int) -> list[JobState]:
    """``n`` jobs at "Suno task created", made through the store as the service would."""
    at = datetime.now(UTC)
    jobs = []
    for i in range(n):
        start = StartJob(
            job_id=new_job_id(at),
            channel_id=f"ch-{i}",
            user_id=USER,
            request_id=new_request_id(at),
            params=GenerationParams(prompt="a song", instrumental=True),
            at=at,
            exclusive=False,
        )
        state: JobState | None = None
        for command in (
            start,
            MarkRequestSent(at),
            RecordTaskCreated(f"task{i:06d}", at),
        ):
            events = decide(command, state)
            commit = Commit(
                start.job_id, state.version if state else 0, tuple(events), fold(events, state)
            )
            await store.append(commit)
            state = commit.state
        assert state is not None
        jobs.append(state)
    return jobs


def _finish(state: JobState) -> Commit:
    at = datetime.now(UTC)
    track = Track(id=f"a-{state.task_id}", audio_url="https://cdn.example/a.mp3", title="Song")
    obs = Observation(state.task_id or "", ProviderStatus.SUCCESS, (track, track))
    events = decide(RecordObservation(obs, Source.CALLBACK, at), state)
    return Commit(state.job_id, state.version, tuple(events), fold(events, state))


async def _getter(
    http: aiohttp.ClientSession, url: str, ids: list[str], stop: asyncio.Event, out: list[float]
) -> None:
    rng = random.Random()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    while not stop.is_set():
        started = time.perf_counter()
        async with http.get(f"{url}/api/music-clips/jobs/{rng.choice(ids)}", headers=headers) as r:
            await r.read()
            assert r.status == 200, r.status
        out.append((time.perf_counter() - started) * 1000)


async def side(
    tmp: Path, name: str, hook: str, size: dict[str, Any], subscribers: int
) -> dict[str, Any]:
    env = {
        "CLIPJOBS_DB": f"sqlite:///{tmp / f'{name}.db'}",
        "CLIPJOBS_PORT": "0",
        "CLIPJOBS_TOKENS": f"{TOKEN}={USER}",
        "SUNO_API_KEY": "bench-suno-key-0001",
        "SUNO_BASE_URL": "http://127.0.0.1:9",  # never called: jobs finish by commits here
        "CLIPJOBS_POLL_AFTER_S": "3600",
        "CLIPJOBS_POLL_INTERVAL_S": "3600",
        "CLIPJOBS_NOTIFY_ALLOW_PRIVATE": "on",
        "CLIPJOBS_LOG_LEVEL": "WARNING",
        "CLIPJOBS_MAX_ACTIVE_PER_USER": "1000000",
    }
    async with (
        running_server(Settings.from_env(env)) as server,
        aiohttp.ClientSession() as http,
    ):
        headers = {"Authorization": f"Bearer {TOKEN}"}
        for _ in range(subscribers):
            async with http.post(
                f"{server.url}/api/music-clips/subscriptions",
                json={"url": hook, "events": ["job.succeeded"]},
                headers=headers,
            ) as r:
                assert r.status == 201, await r.text()
        jobs = await _seed(server.store, size["jobs"])
        ids = [j.job_id for j in jobs]
        committed: dict[str, float] = {}
        gets: list[float] = []
        stop = asyncio.Event()
        getters = [
            asyncio.create_task(_getter(http, server.url, ids, stop, gets)) for _ in range(4)
        ]
        t0 = time.perf_counter()
        gap = size["window_s"] / len(jobs)
        for i, job in enumerate(jobs):
            delay = t0 + i * gap - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await server.store.append(_finish(job))
            committed[job.job_id] = time.time()
        finished_s = time.perf_counter() - t0
        stop.set()
        await asyncio.gather(*getters)
        expected = len(jobs) * subscribers
        arrivals: list[list[Any]] = []
        deadline = time.monotonic() + size["drain_s"]
        while time.monotonic() < deadline:
            async with http.get(hook.replace("/hook", "/results")) as r:
                arrivals = await r.json()
            if len({a[0] for a in arrivals}) >= expected:
                break
            await asyncio.sleep(0.2)
        async with http.post(hook.replace("/hook", "/reset")):
            pass
    first: dict[str, tuple[str, float]] = {}
    for webhook_id, job_id, at in arrivals:
        if webhook_id not in first or at < first[webhook_id][1]:
            first[webhook_id] = (job_id, at)
    latencies = [(at - committed[job_id]) * 1000 for job_id, at in first.values()]
    return {
        "subscribers": subscribers,
        "jobs": len(jobs),
        "finish_window_s": round(finished_s, 2),
        "deliveries_expected": expected,
        "deliveries_arrived": len(first),
        "duplicates": len(arrivals) - len(first),
        "commit_to_200_p50_ms": round(_pct(latencies, 0.5), 1),
        "commit_to_200_p99_ms": round(_pct(latencies, 0.99), 1),
        "commit_to_200_max_ms": round(max(latencies), 1) if latencies else None,
        "gets": len(gets),
        "get_p50_ms": round(_pct(gets, 0.5), 2),
        "get_p99_ms": round(_pct(gets, 0.99), 2),
    }


async def run(size: dict[str, Any], repeats: int) -> dict[str, Any]:
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE, text=True)
    try:
        assert receiver.stdout is not None
        port = int(receiver.stdout.readline())
        hook = f"http://127.0.0.1:{port}/hook"
        pairs = []
        with tempfile.TemporaryDirectory() as tmp:
            for repeat in range(repeats):
                # Alternate which side goes first, so drift on a shared machine evens out.
                order = [0, size["subscribers"]] if repeat % 2 == 0 else [size["subscribers"], 0]
                got = {n: await side(Path(tmp), f"r{repeat}-s{n}", hook, size, n) for n in order}
                pairs.append({"without": got[0], "with": got[size["subscribers"]]})
        return {"size": size, "pairs": pairs}
    finally:
        receiver.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            receiver.wait(5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--jobs", type=int)
    parser.add_argument("--subscribers", type=int, default=5)
    parser.add_argument("--window", type=float)
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--json")
    args = parser.parse_args()
    size = {
        "jobs": args.jobs or (100 if args.quick else 1000),
        "subscribers": args.subscribers,
        "window_s": args.window or (1.0 if args.quick else 3.0),
        "drain_s": 60.0 if args.quick else 180.0,
    }
    repeats = args.repeats or (1 if args.quick else 3)
    result = asyncio.run(run(size, repeats))
    rows = [
        (
            "repeat",
            "deliveries",
            "commit→200 p50 ms",
            "p99 ms",
            "max ms",
            "GET p99 ms (none)",
            f"GET p99 ms ({size['subscribers']} subs)",
        )
    ]
    for i, pair in enumerate(result["pairs"]):
        w, wo = pair["with"], pair["without"]
        rows.append(
            (
                str(i + 1),
                f"{w['deliveries_arrived']}/{w['deliveries_expected']}",
                f"{w['commit_to_200_p50_ms']:.1f}",
                f"{w['commit_to_200_p99_ms']:.1f}",
                f"{w['commit_to_200_max_ms']}",
                f"{wo['get_p99_ms']:.2f}",
                f"{w['get_p99_ms']:.2f}",
            )
        )
    print(
        f"webhooks: {size['jobs']} jobs finishing over {size['window_s']:g} s,"
        f" {size['subscribers']} subscribers each ({machine()})"
    )
    print(table(rows))
    ratios = [p["with"]["get_p99_ms"] / p["without"]["get_p99_ms"] for p in result["pairs"]]
    print(f"GET p99 with/without subscribers, median of pairs: {statistics.median(ratios):.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    complete = all(
        p["with"]["deliveries_arrived"] == p["with"]["deliveries_expected"] for p in result["pairs"]
    )
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
