"""The processes the HTTP benchmarks talk to, each run as its own subprocess.

``clipjobs``: the product through the one composition root
(``clipjobs_cli._compose.compose``: SQLite store, Suno client behind one
``SunoBudget``) on 127.0.0.1, pre-seeded with jobs when asked, plus a
``GET /_bench/info`` route that reports the seeded job ids and the budget's
record. Its Suno is a fake one: in this process, or another (``--fake-url``).

``fake``: the fake Suno (``clipjobs_suno.fake``) in its own process; its
control API reports every API call's arrival (``GET /_fake/arrivals``) and
accepts pre-made tasks (``POST /_fake/tasks``) so thousands of jobs can be "at
Suno" without thousands of rate-limited generate calls.

``bare``: the baseline, a bare aiohttp handler answering every GET with one
constant JSON body (``--body-file``).

Each prints one JSON line (``{"url": ..., "pid": ...}``) once it listens, then
serves until SIGTERM or SIGINT. Run: python bench/_server.py {clipjobs,fake,bare} --help
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from clipjobs import (
    ChannelDefaults,
    Commit,
    GenerationParams,
    JobAccepted,
    JobPolicy,
    ProviderStatus,
    ServiceConfig,
    Source,
    SunoBudget,
    SunoProgressObserved,
    SunoRequestSent,
    SunoSucceeded,
    SunoTaskCreated,
    SystemClock,
    TokenAuthenticator,
    Track,
    WorkerConfig,
    fold,
)
from clipjobs.app.budget import busiest
from clipjobs.app.config import Settings
from clipjobs.app.webhook import WEBHOOK_SECRET_NAME, WebhookSigner
from clipjobs.domain.events import Event
from clipjobs_cli._compose import HttpLimits, bind, compose, url_of
from clipjobs_sqlite import SQLiteEventStore
from clipjobs_suno import SunoApiClient
from clipjobs_suno._fake_state import FakeTask, callback_payload
from clipjobs_suno.fake import FakeSuno, running_fake_suno

TOKEN = "bench-token-0000000001"
USER = "bench"
SUNO_KEY = "bench-suno-key"
WEBHOOK_SECRET = "bench-webhook-secret"
#: Jobs seeded for GET benches: the workers never find them due.
NO_POLL = JobPolicy(timeout_s=7 * 86400, poll_after_s=86400, poll_interval_s=86400)
#: Seeded fake tasks stay at Suno (PENDING, then TEXT_SUCCESS) for the whole run.
LONG_TASK = {"text_after_s": 30.0, "first_after_s": 3000.0, "complete_after_s": 3600.0}
KINDS = ("active", "done", "short", "long")


def job_id(kind: str, i: int, epoch_ms: int) -> str:
    return f"job_{epoch_ms}_{kind[0]}{i:09d}"


def task_id(job: str) -> str:
    return hashlib.sha256(job.encode()).hexdigest()[:32]


def suno_callback(job: str, stage: str) -> dict[str, Any]:
    """The body of Suno's progress callback at ``stage`` for a seeded job's task, as the
    fake Suno would post it to the webhook.
    """
    task = FakeTask(
        task_id=task_id(job),
        created_at=datetime.now().astimezone(),
        origin="http://127.0.0.1",
        body={"callBackUrl": "", "model": "V4_5", "prompt": "bench"},
        scenario="success",
        text_after_s=1,
        first_after_s=2,
        complete_after_s=3,
    )
    return callback_payload(task, stage)


def job_events(kind: str, job: str, at: datetime, policy: JobPolicy) -> list[Event]:
    """The log of a seeded job of ``kind``.

    active: accepted, sent, task created (5 s apart, ``policy``'s polls due);
    done: the same, then a callback's success with two tracks (4 events);
    short / long: 5 / 500 events, polls observed, never due.
    """
    index = int(job.rsplit("_", 1)[1][1:])
    channel = f"channel_{kind[0]}{index:09d}"
    params = GenerationParams(prompt="An upbeat instrumental track for a short video")
    events: list[Event] = [
        JobAccepted(
            job,
            channel,
            USER,
            f"req_{int(at.timestamp() * 1000)}_{index:08d}",
            params,
            at,
            policy=policy if kind == "active" else NO_POLL,
        ),
        SunoRequestSent(1, at + timedelta(seconds=1)),
        SunoTaskCreated(task_id(job), Source.GENERATE, at + timedelta(seconds=2)),
    ]
    if kind == "done":
        base = f"http://127.0.0.1/files/{task_id(job)}"
        tracks = tuple(
            Track(
                f"{task_id(job)[:8]}-000{n}",
                audio_url=f"{base}/{n}.mp3",
                stream_audio_url=f"http://127.0.0.1/stream/{task_id(job)}/{n}",
                image_url=f"{base}/{n}.jpeg",
                title=f"Fake Suno song {n}",
                duration=4.08,
            )
            for n in (1, 2)
        )
        events.append(SunoSucceeded(Source.CALLBACK, tracks, at + timedelta(seconds=3)))
    elif kind in ("short", "long"):
        length = 5 if kind == "short" else 500
        statuses = (ProviderStatus.PENDING, ProviderStatus.TEXT_SUCCESS)
        events += [
            SunoProgressObserved(statuses[i % 2], Source.POLL, at + timedelta(seconds=3 + i / 1000))
            for i in range(length - 3)
        ]
    return events


async def seed(
    store: SQLiteEventStore, counts: dict[str, int], policy: JobPolicy, now: datetime
) -> dict[str, list[str]]:
    """Append ``counts[kind]`` jobs of each kind (one commit each); their ids by kind."""
    epoch_ms = int(now.timestamp() * 1000)
    # Accepted a minute ago, so an active job's first poll is due at once.
    at = now - timedelta(seconds=60)
    ids: dict[str, list[str]] = {}
    for kind, count in counts.items():
        ids[kind] = [job_id(kind, i, epoch_ms) for i in range(count)]

        async def one(job: str, kind: str = kind) -> None:
            events = tuple(job_events(kind, job, at, policy))
            await store.append(Commit(job, 0, events, fold(events)))

        for start in range(0, count, 500):
            await asyncio.gather(*(one(j) for j in ids[kind][start : start + 500]))
    return ids


#: The most starts within any window of so many seconds.
peak = busiest


# --- processes ---------------------------------------------------------------------


def announce(**fields: Any) -> None:
    print(json.dumps({"pid": os.getpid(), **fields}), flush=True)


async def until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


@contextlib.asynccontextmanager
async def serving(app: web.Application, sock: socket.socket | None = None) -> AsyncIterator[str]:
    sock = sock or bind()
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0, handle_signals=False)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        await runner.cleanup()
        sock.close()


async def run_fake(args: argparse.Namespace) -> None:
    fake = FakeSuno(api_key=SUNO_KEY, credits=10**9, rate_limit=args.rate_limit)
    async with running_fake_suno("127.0.0.1", 0, fake=fake) as (url, _):
        announce(url=url)
        await until_signalled()


async def run_bare(args: argparse.Namespace) -> None:
    body = Path(args.body_file).read_bytes()

    async def handler(_request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    async with serving(app) as url:
        announce(url=url, size=len(body))
        await until_signalled()


async def run_clipjobs(args: argparse.Namespace) -> None:
    defaults = Settings()
    settings = Settings(
        db_url=f"sqlite:///{args.db}",
        suno_max_rps=args.max_rps if args.max_rps is not None else defaults.suno_max_rps,
        poll_after_s=args.poll_after_s,
        poll_interval_s=args.poll_interval_s,
    )
    clock = SystemClock()
    started = time.time()
    async with contextlib.AsyncExitStack() as stack:
        store = await SQLiteEventStore.open_url(settings.db_url)
        stack.push_async_callback(store.aclose)
        secret = await store.ensure_secret(WEBHOOK_SECRET_NAME, WEBHOOK_SECRET)
        signer = WebhookSigner(secret)
        session = await stack.enter_async_context(aiohttp.ClientSession())

        fake: FakeSuno | None = None
        fake_url = args.fake_url
        if fake_url is None:
            fake = FakeSuno(api_key=SUNO_KEY, credits=10**9, rate_limit=args.fake_rate_limit)
            fake_url, _ = await stack.enter_async_context(
                running_fake_suno("127.0.0.1", 0, fake=fake)
            )

        # Listen first: callback URLs name the port.
        sock = bind("127.0.0.1", args.port)
        stack.callback(sock.close)
        url = url_of(sock)
        counts = {k: getattr(args, f"seed_{k}") for k in KINDS if getattr(args, f"seed_{k}")}
        ids: dict[str, list[str]] = {}
        seed_s = 0.0
        if counts:
            t0 = time.perf_counter()
            ids = await seed(store, counts, settings.policy(), clock.now())
            tasks = [
                {"taskId": task_id(j), "callBackUrl": signer.callback_url(url, j)}
                for j in ids.get("active", [])
            ]
            if fake is not None:
                for t in tasks:
                    fake.add_task(t["taskId"], t["callBackUrl"], origin=fake_url, **LONG_TASK)
            else:
                # In chunks: aiohttp refuses request bodies over 1 MiB.
                for start in range(0, len(tasks), 2000):
                    chunk = {"tasks": tasks[start : start + 2000], "timings": LONG_TASK}
                    async with session.post(f"{fake_url}/_fake/tasks", json=chunk) as r:
                        r.raise_for_status()
            seed_s = time.perf_counter() - t0

        budget = SunoBudget(settings.suno_max_rps, clock=clock)
        stack.push_async_callback(budget.aclose)

        async def info(_request: web.Request) -> web.Response:
            return web.json_response(
                {
                    "pid": os.getpid(),
                    "jobs": ids,
                    "seed_s": seed_s,
                    "budget": {
                        "limit": budget.limit,
                        "window_s": budget.window.total_seconds(),
                        "peak": budget.peak(),
                        "started": {p.name: n for p, n in budget.started.items()},
                        "slowdowns": budget.slowdowns,
                        "waiting": budget.waiting,
                        "history": [r.started_at.timestamp() for r in budget.history],
                    },
                    "running": {w.value: n for w, n in composed.workers.running().items()},
                    "started_at": started,
                }
            )

        client = SunoApiClient(session, SUNO_KEY, base_url=fake_url)
        call_timeout = client.timeouts.generate
        composed = await compose(
            stack,
            sock,
            store=store,
            suno=client,
            signer=signer,
            authenticator=TokenAuthenticator({TOKEN: USER}),
            clock=clock,
            budget=budget,
            params=ChannelDefaults(GenerationParams(prompt="An upbeat instrumental track")),
            # One bench user starts thousands of jobs: no per-user cap.
            service_config=ServiceConfig(
                policy=settings.policy(), callback_base_url=url, max_active_per_user=0
            ),
            worker_config=WorkerConfig(
                owner=args.worker_id,
                suno_call_timeout_s=call_timeout,
                lease_s=max(60.0, call_timeout * 2),
            ),
            routes=lambda app: app.router.add_get("/_bench/info", info),
            start_workers=not args.no_workers,
            http=HttpLimits(max_connections=args.max_connections, shutdown_s=2.0),
        )
        announce(url=url, fake_url=fake_url, seed_s=seed_s, seeded=counts, started_at=started)
        await until_signalled()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    cj = sub.add_parser("clipjobs")
    cj.add_argument("--db", required=True)
    cj.add_argument("--port", type=int, default=0)
    for kind in KINDS:
        cj.add_argument(f"--seed-{kind}", type=int, default=0)
    cj.add_argument("--fake-url", help="a running `_server.py fake` (default: one in-process)")
    cj.add_argument("--fake-rate-limit", type=int, default=20)
    cj.add_argument("--max-rps", type=float, default=None, help="CLIPJOBS_SUNO_MAX_RPS")
    cj.add_argument("--poll-after-s", type=float, default=Settings().poll_after_s)
    cj.add_argument("--poll-interval-s", type=float, default=Settings().poll_interval_s)
    cj.add_argument("--worker-id", default="bench-worker")
    cj.add_argument("--no-workers", action="store_true")
    cj.add_argument(
        "--max-connections",
        type=int,
        default=HttpLimits().max_connections,
        help="CLIPJOBS_MAX_CONNECTIONS (bench_watchers holds one per watcher)",
    )
    fk = sub.add_parser("fake")
    fk.add_argument("--rate-limit", type=int, default=20)
    bare = sub.add_parser("bare")
    bare.add_argument("--body-file", required=True)
    args = parser.parse_args()
    runner = {"clipjobs": run_clipjobs, "fake": run_fake, "bare": run_bare}[args.what]
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(runner(args))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
