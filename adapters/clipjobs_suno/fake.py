"""A fake Suno that speaks sunoapi.org's API over real HTTP.

Demo mode, the test suite and newcomers run against it, so it keeps Suno's
quirks: errors as HTTP 200 with a non-200 ``code``; 429 means *no credits*
and 430 *too many calls* (20 per 10 s per API key); ``response: null`` in
record-info while pending; the second track's ``audioUrl`` empty at
``FIRST_SUCCESS``; callbacks ``text`` → ``first`` → ``complete`` in
snake_case, each retried up to 3 times when the receiver does not answer 200
within 15 s. Its audio and image URLs serve small real MP3 and JPEG files,
and ``get-timestamped-lyrics`` answers words placed at a singing pace over
them (none for an instrumental) with the MP3's own waveform.

Control it at run time with ``POST /_fake/config`` (``credits``, ``scenario``,
``text_after_s``, ``first_after_s``, ``complete_after_s``, and the rest of
:class:`FakeConfig`) and inspect it with ``GET /_fake/tasks``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import aiohttp
from aiohttp import web
from attrs import frozen

from clipjobs.app.clock import SystemClock
from clipjobs.app.ports import Clock

from ._fake_state import (
    API_MESSAGES,
    SCENARIOS,
    Delivery,
    FakeConfig,
    FakeTask,
    apply_config,
    callback_payload,
    config_json,
    record_info_data,
    redact_url,
    task_json,
    timeline,
    timestamped_lyrics,
)
from ._limits import check_generate_body

__all__ = ["SCENARIOS", "Arrival", "FakeConfig", "FakeSuno", "running_fake_suno", "serve_fake"]

_log = logging.getLogger("clipjobs.fake_suno")

MEDIA_DIR: Final = Path(__file__).parent / "media"

_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _envelope(
    code: int, data: object = None, msg: str | None = None, http: int = 200
) -> web.Response:
    body = {
        "code": code,
        "msg": msg if msg is not None else API_MESSAGES.get(code, "error"),
        "data": data,
    }
    return web.json_response(body, status=http)


async def _json_object(request: web.Request) -> dict[str, Any] | web.Response:
    """The request's body as a JSON object, or Suno's code-400 answer when it is not one."""
    try:
        body = await request.json()
    except ValueError:
        return _envelope(400, msg="The request body is not JSON.")
    if not isinstance(body, dict):
        return _envelope(400, msg="The request body must be a JSON object.")
    return body


@frozen
class Arrival:
    """One API call as it reached the fake: when, on which path, and whether the rate limit
    let it in (False: answered 430)."""

    at: datetime
    path: str
    admitted: bool


class FakeSuno:
    """The fake's state and its aiohttp application.

    ``api_key``: the only bearer key accepted (None: any non-empty key).
    ``clock``: what "time since creation" and the rate-limit window are
    measured with; tests pass a :class:`clipjobs.FakeClock` and move it.
    ``public_url``: the base of the audio and image URLs (default: the origin
    the generate request came to). Keyword ``config`` sets :class:`FakeConfig`.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        clock: Clock | None = None,
        public_url: str | None = None,
        **config: Any,
    ) -> None:
        self._api_key = api_key
        self._clock: Clock = clock or SystemClock()
        self._public_url = public_url.rstrip("/") if public_url else None
        self._config = apply_config(FakeConfig(), config)
        self._tasks: dict[str, FakeTask] = {}
        self._calls: dict[str, deque[datetime]] = {}
        #: Every API call's arrival, in order: when (the fake's clock) and whether the
        #: rate limit let it in. Tests and benches read it to check Suno's window.
        self.arrivals: list[Arrival] = []
        self._deliveries: set[asyncio.Task[None]] = set()
        # The wake-up time of each delivery loop sleeping on the clock (None: busy).
        self._waiting: dict[asyncio.Task[None], datetime | None] = {}
        self._session: aiohttp.ClientSession | None = None
        self._app: web.Application | None = None

    def __repr__(self) -> str:
        return f"FakeSuno(scenario={self._config.scenario!r}, tasks={len(self._tasks)})"

    # --- the Python API ------------------------------------------------------

    @property
    def config(self) -> FakeConfig:
        return self._config

    def configure(self, **changes: Any) -> FakeConfig:
        """Change settings by name, as ``POST /_fake/config`` does; ValueError if nonsensical."""
        self._config = apply_config(self._config, changes)
        return self._config

    def tasks(self) -> list[dict[str, Any]]:
        """Every task with its status now and its callback deliveries (``GET /_fake/tasks``)."""
        now = self._clock.now()
        return [task_json(task, now) for task in self._tasks.values()]

    def add_task(
        self,
        task_id: str,
        callback_url: str,
        *,
        origin: str,
        scenario: str = "success",
        text_after_s: float | None = None,
        first_after_s: float | None = None,
        complete_after_s: float | None = None,
    ) -> None:
        """Know a task as if generate had made it now (``POST /_fake/tasks``): a store seeded
        with jobs in STAGE_30 can poll it. No callback is delivered for it.
        """
        config = self._config
        self._tasks[task_id] = FakeTask(
            task_id=task_id,
            created_at=self._clock.now(),
            origin=origin,
            body={"callBackUrl": callback_url, "model": "V4_5", "prompt": "seeded"},
            scenario=scenario,
            text_after_s=config.text_after_s if text_after_s is None else text_after_s,
            first_after_s=config.first_after_s if first_after_s is None else first_after_s,
            complete_after_s=(
                config.complete_after_s if complete_after_s is None else complete_after_s
            ),
        )

    def deliveries(self, task_id: str) -> list[Delivery]:
        task = self._tasks.get(task_id)
        return list(task.deliveries) if task else []

    async def settle(self, timeout: float = 10.0) -> None:
        """Wait until every callback that is due has been delivered or given up.

        Due means: its time (or its retry's) has come on the fake's clock.
        """
        async with asyncio.timeout(timeout):
            # Polled: the clock moves from outside (FakeClock.advance) without telling anyone.
            while not self._settled():  # noqa: ASYNC110
                await asyncio.sleep(0.005)

    def _settled(self) -> bool:
        now = self._clock.now()
        for task in self._deliveries:
            wake = self._waiting.get(task)
            if not task.done() and (wake is None or wake <= now):
                return False
        return True

    @property
    def app(self) -> web.Application:
        """The aiohttp application (built once); run it with any runner."""
        if self._app is None:
            self._app = self._build_app()
        return self._app

    # --- the application -----------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._not_found_middleware])
        app.router.add_post("/api/v1/generate", self._api(self._generate))
        app.router.add_get("/api/v1/generate/record-info", self._api(self._record_info))
        app.router.add_get("/api/v1/generate/credit", self._api(self._credit))
        app.router.add_post(
            "/api/v1/generate/get-timestamped-lyrics", self._api(self._timestamped_lyrics)
        )
        app.router.add_get(r"/files/{task_id}/{n:[12]}.mp3", self._audio)
        app.router.add_get(r"/stream/{task_id}/{n:[12]}", self._audio)
        app.router.add_get(r"/files/{task_id}/{n:[12]}.jpeg", self._cover)
        app.router.add_get("/_fake/config", self._get_config)
        app.router.add_post("/_fake/config", self._post_config)
        app.router.add_get("/_fake/tasks", self._list_tasks)
        app.router.add_post("/_fake/tasks", self._add_tasks)
        app.router.add_get("/_fake/arrivals", self._list_arrivals)
        app.cleanup_ctx.append(self._lifecycle)
        return app

    async def _lifecycle(self, _: web.Application) -> AsyncIterator[None]:
        self._session = aiohttp.ClientSession()
        try:
            yield
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Cancel callback deliveries and close their session; idempotent."""
        pending = list(self._deliveries)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        self._deliveries.clear()
        self._waiting.clear()
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    @web.middleware
    async def _not_found_middleware(
        self, request: web.Request, handler: _Handler
    ) -> web.StreamResponse:
        # Suno answers a bad path or method with 404; a bare 405 would read as "rate limited".
        try:
            return await handler(request)
        except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
            if request.path.startswith("/api/"):
                return _envelope(404, http=404)
            raise

    def _api(self, handler: Callable[[web.Request, str], Awaitable[web.Response]]) -> _Handler:
        """Wrap an API endpoint in what every call goes through: auth, rate limit, forced errors."""

        async def wrapped(request: web.Request) -> web.StreamResponse:
            key = self._bearer(request)
            if key is None:
                return _envelope(401)
            config = self._config
            admitted = config.scenario != "rate-limited" and self._admit(key)
            self.arrivals.append(Arrival(self._clock.now(), request.path, admitted))
            if not admitted:
                return _envelope(430)
            if config.error_code is not None:
                code = config.error_code
                return _envelope(code, http=code if config.error_http else 200)
            if config.scenario == "server-error":
                return _envelope(500)
            if config.scenario == "maintenance":
                return _envelope(455)
            return await handler(request, key)

        return wrapped

    def _bearer(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        scheme, _, key = header.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            return None
        if self._api_key is not None and not secrets.compare_digest(key, self._api_key):
            return None
        return key

    def _admit(self, key: str) -> bool:
        """Count a call against the key's window; False when the window is full."""
        now = self._clock.now()
        window = timedelta(seconds=self._config.rate_window_s)
        calls = self._calls.setdefault(key, deque())
        while calls and calls[0] <= now - window:
            calls.popleft()
        if len(calls) >= self._config.rate_limit:
            return False
        calls.append(now)
        return True

    def _origin(self, request: web.Request) -> str:
        return self._public_url or str(request.url.origin())

    # --- endpoints -----------------------------------------------------------

    async def _generate(self, request: web.Request, _key: str) -> web.Response:
        body = await _json_object(request)
        if isinstance(body, web.Response):
            return body
        problem = check_generate_body(body)
        if problem is not None:
            return _envelope(problem.code, msg=problem.message)
        if not str(body["callBackUrl"]).startswith(("http://", "https://")):
            return _envelope(400, msg="callBackUrl must be an http(s) URL.")
        config = self._config
        if config.credits < config.generate_cost or config.credits <= 0:
            return _envelope(429)
        self._config = apply_config(config, {"credits": config.credits - config.generate_cost})
        task = FakeTask(
            task_id=secrets.token_hex(16),
            created_at=self._clock.now(),
            origin=self._origin(request),
            body=body,
            scenario=config.scenario,
            text_after_s=config.text_after_s,
            first_after_s=config.first_after_s,
            complete_after_s=config.complete_after_s,
        )
        self._tasks[task.task_id] = task
        _log.info("fake Suno: task %s created (%s)", task.task_id, task.scenario)
        if task.scenario not in ("no-callback", "stuck"):
            self._start_delivery(task)
        return _envelope(200, {"taskId": task.task_id})

    async def _record_info(self, request: web.Request, _key: str) -> web.Response:
        task_id = request.query.get("taskId", "").strip()
        if not task_id:
            return _envelope(400, msg="Please enter taskId.")
        task = self._tasks.get(task_id)
        if task is None:
            return _envelope(400, msg=f"Task {task_id[:64]} does not exist.")
        return _envelope(200, record_info_data(task, self._clock.now()))

    async def _credit(self, _request: web.Request, _key: str) -> web.Response:
        return _envelope(200, self._config.credits)

    async def _timestamped_lyrics(self, request: web.Request, _key: str) -> web.Response:
        body = await _json_object(request)
        if isinstance(body, web.Response):
            return body
        task_id, audio_id = body.get("taskId"), body.get("audioId")
        if not isinstance(task_id, str) or not task_id.strip():
            return _envelope(400, msg="Please enter taskId.")
        if not isinstance(audio_id, str) or not audio_id.strip():
            return _envelope(400, msg="Please enter audioId.")
        task = self._tasks.get(task_id.strip())
        if task is None:
            return _envelope(400, msg=f"Task {task_id[:64]} does not exist.")
        code, msg, data = timestamped_lyrics(
            task, audio_id.strip(), self._clock.now(), self._config
        )
        return _envelope(code, data, msg)

    async def _audio(self, request: web.Request) -> web.StreamResponse:
        # Like Suno's CDN, files outlive the API's memory: any well-formed task id is served.
        if not _HEX32.match(request.match_info["task_id"]):
            raise web.HTTPNotFound()
        path = MEDIA_DIR / f"track-{request.match_info['n']}.mp3"
        return web.FileResponse(path, headers={"Content-Type": "audio/mpeg"})

    async def _cover(self, request: web.Request) -> web.StreamResponse:
        if not _HEX32.match(request.match_info["task_id"]):
            raise web.HTTPNotFound()
        path = MEDIA_DIR / f"cover-{request.match_info['n']}.jpeg"
        return web.FileResponse(path, headers={"Content-Type": "image/jpeg"})

    async def _get_config(self, _request: web.Request) -> web.Response:
        return web.json_response({"config": config_json(self._config), "scenarios": SCENARIOS})

    async def _post_config(self, request: web.Request) -> web.Response:
        try:
            changes = await request.json()
        except ValueError:
            return web.json_response({"error": "the body is not JSON"}, status=400)
        if not isinstance(changes, dict):
            return web.json_response({"error": "the body must be a JSON object"}, status=400)
        try:
            config = self.configure(**changes)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        _log.info("fake Suno: config changed: %s", ", ".join(sorted(changes)))
        return web.json_response({"config": config_json(config)})

    async def _list_tasks(self, _request: web.Request) -> web.Response:
        return web.json_response({"tasks": self.tasks()})

    async def _add_tasks(self, request: web.Request) -> web.Response:
        """``{"tasks": [{"taskId", "callBackUrl"}, ...], "timings": {...}}``: see ``add_task``."""
        try:
            body = await request.json()
            timings = body.get("timings", {})
            after = {
                name: float(timings[name])
                for name in ("text_after_s", "first_after_s", "complete_after_s")
                if name in timings
            }
            listed = [(str(t["taskId"]), str(t["callBackUrl"])) for t in body["tasks"]]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return web.json_response({"error": f"bad task list: {exc!r}"}, status=400)
        for task_id, callback_url in listed:  # all checked first: a bad list adds nothing
            self.add_task(
                task_id,
                callback_url,
                origin=self._origin(request),
                text_after_s=after.get("text_after_s"),
                first_after_s=after.get("first_after_s"),
                complete_after_s=after.get("complete_after_s"),
            )
        return web.json_response({"tasks": len(self._tasks)})

    async def _list_arrivals(self, _request: web.Request) -> web.Response:
        """Every API call's arrival (epoch seconds) and the rate limit it was held to."""
        return web.json_response(
            {
                "admitted": [a.at.timestamp() for a in self.arrivals if a.admitted],
                "refused": [a.at.timestamp() for a in self.arrivals if not a.admitted],
                "rate_limit": self._config.rate_limit,
                "rate_window_s": self._config.rate_window_s,
                "tasks": len(self._tasks),
            }
        )

    # --- callbacks -----------------------------------------------------------

    def _start_delivery(self, task: FakeTask) -> None:
        if self._session is None:
            _log.warning("fake Suno: not running under its app's lifecycle; no callbacks")
            return
        runner = asyncio.get_running_loop().create_task(self._deliver_all(task))
        self._deliveries.add(runner)
        self._waiting[runner] = None
        runner.add_done_callback(self._forget)

    def _forget(self, runner: asyncio.Task[None]) -> None:
        self._deliveries.discard(runner)
        self._waiting.pop(runner, None)
        if not runner.cancelled() and runner.exception() is not None:
            _log.error("fake Suno: callback delivery crashed", exc_info=runner.exception())

    async def _sleep_until(self, when: datetime) -> None:
        me = asyncio.current_task()
        assert me is not None
        self._waiting[me] = when
        try:
            await self._clock.sleep((when - self._clock.now()).total_seconds())
        finally:
            self._waiting[me] = None

    async def _deliver_all(self, task: FakeTask) -> None:
        copies = 2 if task.scenario == "duplicate-callbacks" else 1
        for stage, after in timeline(task):
            await self._sleep_until(task.created_at + timedelta(seconds=after))
            for _ in range(copies):
                await self._deliver(task, stage)

    async def _deliver(self, task: FakeTask, stage: str) -> None:
        """POST one callback; retry while the receiver does not answer 200 in time."""
        payload = callback_payload(task, stage)
        config = self._config
        for attempt in range(1, config.callback_retries + 2):
            delivery = Delivery(stage, attempt, self._clock.now())
            task.deliveries.append(delivery)
            await self._post(task.callback_url, payload, delivery, config.callback_timeout_s)
            if delivery.delivered:
                _log.info("fake Suno: %s callback for %s delivered", stage, task.task_id)
                return
            _log.info(
                "fake Suno: %s callback for %s failed (attempt %d): %s",
                stage,
                task.task_id,
                attempt,
                delivery.error or delivery.status,
            )
            if attempt <= config.callback_retries:
                retry_at = self._clock.now() + timedelta(seconds=config.callback_retry_delay_s)
                await self._sleep_until(retry_at)

    async def _post(
        self, url: str, payload: Mapping[str, Any], delivery: Delivery, timeout: float
    ) -> None:
        session = self._session
        if session is None:
            delivery.error = "the fake is shutting down"
            return
        try:
            async with session.post(
                url, json=payload, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as response:
                delivery.status = response.status
                delivery.answer = (await response.text(errors="replace"))[:200]
        except TimeoutError:
            delivery.error = f"no answer within {timeout:g} s"
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            delivery.error = redact_url(f"{type(exc).__name__}: {exc}")[:200]


@contextlib.asynccontextmanager
async def running_fake_suno(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    fake: FakeSuno | None = None,
    **config: Any,
) -> AsyncIterator[tuple[str, FakeSuno]]:
    """Serve a fake Suno (a new one from ``config``, or ``fake``); yield its base URL and it."""
    if fake is None:
        fake = FakeSuno(**config)
    elif config:
        fake.configure(**config)
    runner = web.AppRunner(fake.app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in str(bound_host) else str(bound_host)
        yield f"http://{shown}:{bound_port}", fake
    finally:
        await runner.cleanup()


async def serve_fake(
    host: str = "127.0.0.1",
    port: int = 8090,
    scenario: str = "success",
    credits: int = 100,
    *,
    api_key: str | None = None,
    on_ready: Callable[[str], None] | None = None,
    **config: Any,
) -> None:
    """Run a fake Suno until cancelled (what ``clipjobs fake-suno`` calls).

    ``on_ready`` gets the base URL once the server listens. Bad settings
    raise ValueError before anything listens.
    """
    fake = FakeSuno(api_key=api_key, scenario=scenario, credits=credits, **config)
    async with running_fake_suno(host, port, fake=fake) as (base_url, _):
        _log.info(
            "fake Suno listening on %s (scenario %s, %d credits)", base_url, scenario, credits
        )
        if on_ready is not None:
            on_ready(base_url)
        await asyncio.Event().wait()
