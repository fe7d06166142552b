"""A whole clipjobs in this process, on real things, for the end-to-end tests.

``running_stack(tmp_path, ...)`` composes what ``clipjobs serve`` composes, but
with test timings: a SQLite file under ``tmp_path`` (or, with
``backend="postgres"``, a fresh schema on ``CLIPJOBS_TEST_PG_DSN``), the real
``SunoApiClient`` talking HTTP to the fake Suno on 127.0.0.1, one
``SunoBudget``, the ``JobService``, the ``Workers`` and the HTTP API on a real
TCP socket. The fake's callbacks go to that API's real webhook (or through a
``CallbackRelay`` that drops, duplicates or shuffles them on the way).

Every Suno API call the fake answers is written down (``Stack.calls``): when it
arrived, which endpoint, and the ``code`` it answered, so tests can read the
budget off the fake's side of the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
from aiohttp import web
from attrs import define

from _backends import PG_DSN, scratch_pg_store
from _procs import CallLog
from clipjobs import (
    FakeClock,
    JobPolicy,
    JobService,
    JobState,
    Metrics,
    ServiceConfig,
    Stage,
    SunoBudget,
    SystemClock,
    TokenAuthenticator,
    WorkerConfig,
    Workers,
    evolve,
    fold,
)
from clipjobs.app.ports import CallBudget, Clock, EventStore, RecordedEvent
from clipjobs.app.webhook import WEBHOOK_PATH, WEBHOOK_SECRET_NAME, WebhookSigner, new_secret
from clipjobs_aiohttp import ApiConfig
from clipjobs_cli._compose import HttpLimits, bind, compose
from clipjobs_sqlite import SQLiteEventStore
from clipjobs_suno import SunoApiClient, SunoTimeouts
from clipjobs_suno.fake import FakeSuno, running_fake_suno

TOKEN = "e2e-token-000001"
USER = "e2e-user"
#: A second user, for what one user's jobs may or may not do to another's.
OTHER_TOKEN = "e2e-token-000002"
OTHER_USER = "e2e-other-user"
SUNO_KEY = "e2e-suno-key"

#: The fake moves a task along in a fraction of a second.
QUICK = {"text_after_s": 0.05, "first_after_s": 0.1, "complete_after_s": 0.15}
#: ...and, unless a test sets Suno's limit, lets through every call the fast polls make.
FAKE_DEFAULTS = {**QUICK, "rate_limit": 1_000_000, "rate_window_s": 1.0}
#: Polls never come due within a test: only callbacks move jobs.
CALLBACKS_ONLY = JobPolicy(timeout_s=120, poll_after_s=3600, poll_interval_s=3600)
#: Polls a few times a second: the fallback shows within a second.
FAST_POLL = JobPolicy(timeout_s=120, poll_after_s=0.05, poll_interval_s=0.05)

TERMINAL_EVENTS = frozenset({"SunoSucceeded", "JobFailed", "JobTimedOut", "ClipReady"})


# --- a relay between the fake's callbacks and the webhook ------------------------


class CallbackRelay:
    """Takes the fake's callbacks in Suno's place and decides what reaches the webhook.

    ``mode="drop"``: answers 200 and forwards nothing (callbacks lost on the way).
    ``mode="storm"``: answers 200 and forwards ``copies`` of each, every copy after
    its own random delay up to ``max_delay_s``, so stages arrive duplicated and
    out of order. Every forwarded POST is real HTTP to the webhook.
    """

    def __init__(
        self, mode: str, *, copies: int = 3, max_delay_s: float = 0.3, seed: int = 7
    ) -> None:
        assert mode in ("drop", "storm")
        self.mode = mode
        self.copies = copies
        self.max_delay_s = max_delay_s
        self._rng = random.Random(seed)
        self.received: list[dict[str, Any]] = []
        #: (HTTP status, webhook body) of each forwarded copy.
        self.answers: list[tuple[int, dict[str, Any]]] = []
        self.target = ""
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append(json.loads(body))
        if self.mode == "storm":
            for _ in range(self.copies):
                delay = self._rng.uniform(0, self.max_delay_s)
                task = asyncio.create_task(self._forward(request.path_qs, body, delay))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        return web.json_response({"code": 200, "msg": "success"})

    async def _forward(self, path_qs: str, body: bytes, delay: float) -> None:
        await asyncio.sleep(delay)
        assert self._session is not None
        async with self._session.post(
            self.target + path_qs, data=body, headers={"Content-Type": "application/json"}
        ) as response:
            self.answers.append((response.status, await response.json()))

    async def settle(self, timeout: float = 10.0) -> None:
        """Wait until every copy scheduled so far has been forwarded."""
        async with asyncio.timeout(timeout):
            while self._tasks:
                await asyncio.gather(*list(self._tasks))

    @contextlib.asynccontextmanager
    async def running(self, target: str) -> AsyncIterator[str]:
        self.target = target
        app = web.Application()
        app.router.add_post(WEBHOOK_PATH, self._receive)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        sock = bind()
        try:
            async with aiohttp.ClientSession() as session:
                self._session = session
                await web.SockSite(runner, sock).start()
                yield f"http://127.0.0.1:{sock.getsockname()[1]}"
                for task in list(self._tasks):
                    task.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)
        finally:
            await runner.cleanup()
            sock.close()


# --- the stack -------------------------------------------------------------------


@define
class Stack:
    url: str
    fake_url: str
    fake: FakeSuno
    calls: CallLog
    store: EventStore
    service: JobService
    workers: Workers
    budget: SunoBudget
    metrics: Metrics
    http: aiohttp.ClientSession
    #: With ``shared_budget``: the PostgreSQL budget the service uses instead of ``budget``.
    shared: CallBudget | None = None

    # --- the API, over HTTP -----------------------------------------------------

    def _auth(self, token: str = TOKEN) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    async def run_once(
        self, channel: str = "channel_1", *, token: str = TOKEN
    ) -> tuple[int, dict[str, Any]]:
        async with self.http.post(
            f"{self.url}/api/music-clips/channels/{channel}/runOnce", headers=self._auth(token)
        ) as response:
            return response.status, await response.json()

    async def start(self, channel: str = "channel_1", *, token: str = TOKEN) -> str:
        status, body = await self.run_once(channel, token=token)
        assert status == 202, body
        return str(body["jobId"])

    async def job(self, job_id: str, *, token: str = TOKEN) -> dict[str, Any]:
        async with self.http.get(
            f"{self.url}/api/music-clips/jobs/{job_id}", headers=self._auth(token)
        ) as response:
            assert response.status == 200, await response.text()
            body: dict[str, Any] = await response.json()
            return body

    async def wait_for(
        self,
        job_id: str,
        check: Callable[[dict[str, Any]], bool],
        *,
        timeout: float = 20.0,
        what: str = "condition",
    ) -> dict[str, Any]:
        """The GET body once ``check(body)`` holds (asked every 20 ms)."""
        last: dict[str, Any] = {}
        try:
            async with asyncio.timeout(timeout):
                while True:
                    last = await self.job(job_id)
                    if check(last):
                        return last
                    await asyncio.sleep(0.02)
        except TimeoutError:
            raise AssertionError(f"{job_id}: no {what} within {timeout} s; last {last}") from None

    async def wait_for_stage(self, job_id: str, *stages: Stage, timeout: float = 20.0) -> Any:
        wanted = {s.value for s in stages}
        return await self.wait_for(
            job_id, lambda b: b["stage"] in wanted, timeout=timeout, what=f"stage in {wanted}"
        )

    async def watch(self, job_id: str, *, timeout: float = 20.0) -> list[dict[str, Any]]:
        """Every version of the job GET shows, following it by long polling until it is done."""
        seen: list[dict[str, Any]] = []
        version = 0
        async with asyncio.timeout(timeout):
            while True:
                headers = {**self._auth(), "Prefer": "wait=5"}
                if version:
                    headers["If-None-Match"] = f'"{version}"'
                async with self.http.get(
                    f"{self.url}/api/music-clips/jobs/{job_id}", headers=headers
                ) as response:
                    if response.status == 304:
                        continue
                    assert response.status == 200, await response.text()
                    body = await response.json()
                seen.append(body)
                version = body["version"]
                if body["done"]:
                    return seen

    # --- the store ----------------------------------------------------------------

    async def history(self, job_id: str) -> list[RecordedEvent]:
        return await self.store.read(job_id)

    async def wait_for_log(
        self,
        job_id: str,
        check: Callable[[list[str]], bool],
        *,
        timeout: float = 20.0,
        what: str = "condition",
    ) -> list[str]:
        """The job's event types once ``check(types)`` holds (read every 20 ms)."""
        types: list[str] = []
        try:
            async with asyncio.timeout(timeout):
                while not check(types := event_types(await self.history(job_id))):
                    await asyncio.sleep(0.02)
        except TimeoutError:
            raise AssertionError(f"{job_id}: no {what} within {timeout} s; log {types}") from None
        return types

    # --- the fake, over its control API -------------------------------------------

    async def configure_fake(self, **changes: Any) -> dict[str, Any]:
        async with self.http.post(f"{self.fake_url}/_fake/config", json=changes) as response:
            assert response.status == 200, await response.text()
            body: dict[str, Any] = await response.json()
            return body

    async def fake_tasks(self) -> list[dict[str, Any]]:
        async with self.http.get(f"{self.fake_url}/_fake/tasks") as response:
            assert response.status == 200
            tasks: list[dict[str, Any]] = (await response.json())["tasks"]
            return tasks

    async def tasks_per_job(self) -> Counter[str]:
        """How many generate calls the fake accepted for each job (by its callback URL)."""
        return tasks_per_job(await self.fake_tasks())


def job_of(task: dict[str, Any]) -> str:
    """The job a fake Suno task was made for (the ``job`` in its callback URL)."""
    (job,) = parse_qs(urlsplit(task["callBackUrl"]).query)["job"]
    return job


def tasks_per_job(tasks: Iterable[dict[str, Any]]) -> Counter[str]:
    return Counter(job_of(task) for task in tasks)


# --- reading a log ------------------------------------------------------------------


def event_types(records: Iterable[RecordedEvent]) -> list[str]:
    return [type(r.event).__name__ for r in records]


def contiguous(records: list[RecordedEvent]) -> bool:
    return [r.version for r in records] == list(range(1, len(records) + 1))


def states(records: list[RecordedEvent]) -> list[JobState]:
    """The job after each event of its log (the fold of every prefix)."""
    out = [fold([records[0].event])]
    for record in records[1:]:
        out.append(evolve(out[-1], record.event))
    return out


def stage_numbers(records: list[RecordedEvent]) -> list[int]:
    return [s.stage.number for s in states(records)]


def never_down(numbers: list[int]) -> bool:
    return all(a <= b for a, b in itertools.pairwise(numbers))


def terminal_events(records: Iterable[RecordedEvent]) -> list[str]:
    return [t for t in event_types(records) if t in TERMINAL_EVENTS]


# --- composing it ----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def open_store(backend: str, tmp_path: Path) -> AsyncIterator[EventStore]:
    """A new, empty store: a SQLite file in ``tmp_path``, or a PostgreSQL schema dropped after."""
    if backend == "sqlite":
        async with await SQLiteEventStore.open(tmp_path / "clipjobs.db") as sqlite:
            yield sqlite
        return
    assert backend == "postgres" and PG_DSN, backend
    async with scratch_pg_store(PG_DSN, f"e2e_{secrets.token_hex(6)}", max_size=8) as pg:
        yield pg


@contextlib.asynccontextmanager
async def running_stack(
    tmp_path: Path,
    *,
    fake: dict[str, Any] | None = None,
    policy: JobPolicy = CALLBACKS_ONLY,
    max_rps: float = 1000.0,
    window_s: float = 1.0,
    service: dict[str, Any] | None = None,
    workers: dict[str, Any] | None = None,
    api: ApiConfig | None = None,
    relay: CallbackRelay | None = None,
    backend: str = "sqlite",
    clock: Clock | None = None,
    shared_budget: bool = False,
) -> AsyncIterator[Stack]:
    """Serve a full clipjobs on 127.0.0.1 until the block ends, then close it in order.

    ``clock``: the system's, or a ``FakeClock`` the test moves (workers, budget, service and
    the API's heartbeats all read it; the fake Suno keeps its own). On a fake clock the
    budget does not pace calls: two calls at one fake instant would leave the second
    waiting for the test to move the clock on. ``shared_budget`` (on PostgreSQL): the
    service's budget is a ``PostgresCallBudget`` on the store's schema, as ``clipjobs
    serve`` composes it.
    """
    pacing = not isinstance(clock, FakeClock)
    clock = clock or SystemClock()
    metrics = Metrics()
    calls = CallLog()
    the_fake = FakeSuno(api_key=SUNO_KEY, **{**FAKE_DEFAULTS, **(fake or {})})
    the_fake.app.middlewares.append(calls.middleware)
    async with contextlib.AsyncExitStack() as stack:
        sock = bind()
        stack.callback(sock.close)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"

        store = await stack.enter_async_context(open_store(backend, tmp_path))
        secret = await store.ensure_secret(WEBHOOK_SECRET_NAME, new_secret())

        fake_url, _ = await stack.enter_async_context(running_fake_suno(fake=the_fake))
        callback_base = url
        if relay is not None:
            callback_base = await stack.enter_async_context(relay.running(url))

        suno_session = await stack.enter_async_context(aiohttp.ClientSession())
        http = await stack.enter_async_context(aiohttp.ClientSession())
        client = SunoApiClient(
            suno_session,
            SUNO_KEY,
            base_url=fake_url,
            timeouts=SunoTimeouts(generate=5, record_info=5, credits=2, connect=2),
            metrics=metrics,
        )
        budget = SunoBudget(max_rps, clock=clock, window_s=window_s, metrics=metrics, pacing=pacing)
        stack.push_async_callback(budget.aclose)
        shared = await _shared_budget(store, max_rps, window_s, clock, metrics, shared_budget)
        if shared is not None:
            stack.push_async_callback(shared.aclose)
        settings: dict[str, Any] = {
            "policy": policy,
            "callback_base_url": callback_base,
            "one_job_per_channel": False,
            "send_backoff_s": 0.05,
            "send_backoff_max_s": 0.2,
            "max_active_per_user": 0,  # many jobs for one user; the caps have their own tests
            **(service or {}),
        }
        composed = await compose(
            stack,
            sock,
            store=store,
            suno=client,
            signer=WebhookSigner(secret),
            authenticator=TokenAuthenticator({TOKEN: USER, OTHER_TOKEN: OTHER_USER}),
            clock=clock,
            budget=shared or budget,
            metrics=metrics,
            service_config=ServiceConfig(**settings),
            worker_config=WorkerConfig(
                **{
                    "owner": "e2e",
                    "lease_s": 10.0,
                    "suno_call_timeout_s": 5.0,
                    "error_backoff_s": 0.05,
                    "idle_s": 0.02,
                    "grace_s": 1.0,
                    **(workers or {}),
                }
            ),
            api_config=api,
            http=HttpLimits(shutdown_s=1.0),
        )
        the_service, the_workers = composed.service, composed.workers
        yield Stack(
            url=url,
            fake_url=fake_url,
            fake=the_fake,
            calls=calls,
            store=store,
            service=the_service,
            workers=the_workers,
            budget=budget,
            metrics=metrics,
            http=http,
            shared=shared,
        )


async def _shared_budget(
    store: EventStore,
    max_rps: float,
    window_s: float,
    clock: Clock,
    metrics: Metrics,
    wanted: bool,
) -> CallBudget | None:
    if not wanted:
        return None
    from clipjobs_postgres import PostgresCallBudget, PostgresEventStore

    assert isinstance(store, PostgresEventStore), "a shared budget needs backend='postgres'"
    return await PostgresCallBudget.open(
        PG_DSN, store.schema, max_rps, clock=clock, window_s=window_s, metrics=metrics
    )
