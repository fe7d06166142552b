"""The whole server for the browser tests: SQLite, the real Suno client, the fake Suno, workers.

Everything listens on 127.0.0.1: the API on a socket bound first (its URL is
the ``PUBLIC_BASE_URL`` the fake Suno calls back), the fake Suno on port 0.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from attrs import define, evolve

from clipjobs import (
    ChannelDefaults,
    GenerationParams,
    JobPolicy,
    JobService,
    ServiceConfig,
    SunoBudget,
    SystemClock,
    TokenAuthenticator,
    WebhookSigner,
    WorkerConfig,
)
from clipjobs_cli._compose import HttpLimits, bind, compose
from clipjobs_sqlite import SQLiteEventStore
from clipjobs_suno import SunoApiClient
from clipjobs_suno.fake import FakeSuno, running_fake_suno

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
NO_CHROMIUM = "/usr/bin/chromium is missing (apt-get install chromium; .ci/run installs it)"

TOKEN = "browser-token-0001"
USER = "alice"
SUNO_KEY = "suno-key-for-browser-tests"

#: Callbacks drive the job; polling starts late enough never to matter in a test.
CALLBACKS_ONLY = JobPolicy(timeout_s=120, poll_after_s=600, poll_interval_s=600)


@define
class Stack:
    """A running clipjobs: its URL (with the mount prefix), the parts, the fake Suno."""

    url: str
    service: JobService
    store: SQLiteEventStore
    fake: FakeSuno

    def page(self, path: str = "/", *, token: str | None = TOKEN) -> str:
        """The URL of a page, the token in its fragment as ``clipjobs serve`` prints it."""
        fragment = f"#token={token}" if token is not None else ""
        return f"{self.url}{path}{fragment}"


@contextlib.asynccontextmanager
async def running_stack(
    tmp_path: Path,
    *,
    scenario: str = "success",
    policy: JobPolicy = CALLBACKS_ONLY,
    stale_after_s: float = 60.0,
    prefix: str = "",
    clip_render: bool = False,
    **fake_config: Any,
) -> AsyncIterator[Stack]:
    """Serve clipjobs (mounted under ``prefix`` when given) against a fake Suno in ``scenario``.

    ``clip_render`` adds ffmpeg post-processing (tiny, fast clips) and serves them at /media.
    """
    clock = SystemClock()
    async with contextlib.AsyncExitStack() as stack:
        sock = bind()
        stack.callback(sock.close)
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        suno_url, fake = await stack.enter_async_context(
            running_fake_suno(api_key=SUNO_KEY, scenario=scenario, **fake_config)
        )
        store = await SQLiteEventStore.open(tmp_path / "jobs.db")
        stack.push_async_callback(store.aclose)
        session = await stack.enter_async_context(aiohttp.ClientSession())
        media_dir = tmp_path / "media"
        post_processor = None
        if clip_render:
            from clipjobs_ffmpeg import FfmpegPostProcessor

            media_dir.mkdir()
            policy = evolve(policy, clip_render=True)
            post_processor = FfmpegPostProcessor(
                session,
                media_dir,
                allowed_hosts=[suno_url],
                public_prefix="/media",
                clip_max_s=1.0,
                fps=2.0,
                preset="ultrafast",
            )
        budget = SunoBudget(100.0, clock=clock, window_s=1.0)
        stack.push_async_callback(budget.aclose)
        composed = await compose(
            stack,
            sock,
            store=store,
            suno=SunoApiClient(session, SUNO_KEY, base_url=suno_url),
            signer=WebhookSigner("webhook-secret-for-browser-tests"),
            authenticator=TokenAuthenticator({TOKEN: USER}),
            clock=clock,
            budget=budget,
            params=ChannelDefaults(
                GenerationParams(prompt="A calm piano piece", instrumental=True)
            ),
            service_config=ServiceConfig(
                policy=policy,
                stale_after_s=stale_after_s,
                callback_base_url=base + prefix,
                send_backoff_s=0.05,
                send_backoff_max_s=0.2,
            ),
            worker_config=WorkerConfig(
                owner="browser-tests",
                lease_s=20.0,
                suno_call_timeout_s=10.0,
                error_backoff_s=0.1,
                idle_s=0.05,
                grace_s=1.0,
            ),
            post_processor=post_processor,
            media_dir=media_dir if clip_render else None,
            mount=prefix,
            http=HttpLimits(shutdown_s=2.0),
        )
        service = composed.service
        yield Stack(base + prefix, service, store, fake)
