"""``clipjobs serve``: settings in, a serving clipjobs out.

``running_server(settings)`` turns settings into the parts the composition
root (:func:`clipjobs_cli._compose.compose`) takes: the store, the Suno
client (or, with no ``SUNO_API_KEY``, a fake Suno in this process), the
budget, the tokens, the post-processor. It closes them in the right order
when the block ends:
first the workers stop starting Suno calls and finish the ones in flight,
then the HTTP server drains, then the fake, the sessions and the store
close. ``clipjobs serve`` runs it until SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web
from attrs import define

from clipjobs import (
    BudgetedSuno,
    ChannelDefaults,
    JobService,
    ServiceConfig,
    SunoBudget,
    SystemClock,
    TokenAuthenticator,
    WorkerConfig,
    Workers,
)
from clipjobs.app.config import Settings
from clipjobs.app.logs import RedactingFilter, pipeline_log
from clipjobs.app.metrics import Metrics
from clipjobs.app.ports import CallBudget, Clock, EventStore, PostProcessor, SunoClient
from clipjobs.app.webhook import WEBHOOK_SECRET_NAME, WebhookSigner, new_secret
from clipjobs.domain.errors import ConfigError
from clipjobs.domain.events import GenerationParams
from clipjobs_aiohttp import ApiConfig
from clipjobs_suno import SunoApiClient

from ._compose import MEDIA_PREFIX, HttpLimits, bind, compose, url_of
from ._keeping import kept_media_routes, make_media_dir, media_keeper, start_pruner
from ._notify import add_webhook_routes, start_webhooks

if TYPE_CHECKING:
    from clipjobs_suno.fake import FakeSuno

__all__ = ["RunningServer", "open_budget", "open_store", "running_server", "serve"]

#: The demo's fake Suno answers quickly, so a newcomer sees a whole job in ~10 s.
DEMO_FAKE_TIMINGS: dict[str, Any] = {
    "text_after_s": 2.0,
    "first_after_s": 4.0,
    "complete_after_s": 7.0,
}
DEMO_USER = "demo"


@define
class RunningServer:
    """What ``running_server`` built: the parts, for tests and embedding."""

    url: str
    settings: Settings
    service: JobService
    store: EventStore
    workers: Workers
    budget: CallBudget
    metrics: Metrics
    app: web.Application
    #: The token generated because ``CLIPJOBS_TOKENS`` was unset (else None).
    generated_token: str | None
    #: The in-process fake Suno of demo mode (else None).
    fake_suno_url: str | None
    fake_suno: FakeSuno | None

    @property
    def demo_link(self) -> str | None:
        """The start page with the generated token in its fragment (never sent to the server)."""
        if self.generated_token is None:
            return None
        return f"{self.url}/#token={self.generated_token}"


async def open_store(settings: Settings) -> EventStore:
    """The store ``CLIPJOBS_DB`` names, migrated and ready."""
    url = settings.db_url
    if url.startswith("sqlite:///"):
        from clipjobs_sqlite import SQLiteEventStore

        return await SQLiteEventStore.open_url(url)
    try:
        from clipjobs_postgres import PostgresEventStore
    except ImportError:
        raise ConfigError(
            "CLIPJOBS_DB is a PostgreSQL URL but asyncpg is not installed:"
            " pip install 'clipjobs[postgres]'"
        ) from None
    return await PostgresEventStore.open(_pg_dsn(url), settings.pg_schema)


def _pg_dsn(url: str) -> str:
    return "postgresql://" + url.split("://", 1)[1]  # postgres:// works too


async def open_budget(settings: Settings, clock: Clock, metrics: Metrics) -> CallBudget:
    """The Suno budget: shared by every process of a PostgreSQL schema, else this process's."""
    if settings.db_url.startswith("sqlite:///"):
        return SunoBudget(settings.suno_max_rps, clock=clock, metrics=metrics)
    from clipjobs_postgres import PostgresCallBudget

    return await PostgresCallBudget.open(
        _pg_dsn(settings.db_url),
        settings.pg_schema,
        settings.suno_max_rps,
        clock=clock,
        metrics=metrics,
        owner=settings.worker_id,
    )


def _check_clip_render(settings: Settings) -> None:
    """Before anything opens: media hosts that can be, ffmpeg, the media directory."""
    from clipjobs_ffmpeg import check_ffmpeg, check_media_hosts, find_fonts

    check_media_hosts(settings.clip_hosts)  # checked even unused: bad config is bad config
    if not settings.clip_render:
        return
    check_ffmpeg()  # ConfigError with one clear line when ffmpeg is missing
    if settings.clip_style == "full":
        find_fonts()  # …or when the DejaVu fonts are
    make_media_dir(settings)


def _post_processor(
    settings: Settings, session: aiohttp.ClientSession, suno_base_url: str, suno: SunoClient
) -> PostProcessor | None:
    if not settings.clip_render:
        return None
    from clipjobs_ffmpeg import FfmpegPostProcessor

    return FfmpegPostProcessor(
        session,
        settings.media_dir,
        allowed_hosts=[suno_base_url, *settings.clip_hosts],
        clip_max_s=settings.clip_max_s,
        public_prefix=MEDIA_PREFIX,
        style=settings.clip_style,
        captions=settings.clip_captions,
        suno=suno,  # the budgeted client: the lyrics call shares Suno's rate limit
    )


@contextlib.asynccontextmanager
async def running_server(
    settings: Settings,
    *,
    redactor: RedactingFilter | None = None,
    announce: Callable[[str], None] | None = None,
    api_config: ApiConfig | None = None,
    worker_config: dict[str, Any] | None = None,
) -> AsyncIterator[RunningServer]:
    """Serve clipjobs as ``settings`` say until the block ends.

    ``announce`` gets the lines a person starting the server must see (demo
    mode, a generated token); ``redactor`` learns every secret the server
    holds so no log line shows one. ``worker_config`` overrides
    :class:`~clipjobs.WorkerConfig` fields (tests).
    """
    say = announce or (lambda line: None)
    redactor = redactor or RedactingFilter()
    for known in (settings.suno_api_key, *(settings.tokens or {}), *(settings.admin_tokens or {})):
        if known:
            redactor.add(known)
    clock = SystemClock()
    metrics = Metrics()
    _check_clip_render(settings)
    async with contextlib.AsyncExitStack() as stack:
        sock = bind(settings.host, settings.port)
        stack.callback(sock.close)
        url = url_of(sock, settings.host)

        store = await open_store(settings)
        stack.push_async_callback(store.aclose)
        secret = await store.ensure_secret(WEBHOOK_SECRET_NAME, new_secret())
        redactor.add(secret)

        tokens = settings.tokens
        generated: str | None = None
        if not tokens:
            generated = secrets.token_urlsafe(24)
            redactor.add(generated)
            tokens = {generated: DEMO_USER}
            say(f"no CLIPJOBS_TOKENS set: generated a token for user {DEMO_USER!r}: {generated}")

        suno_session = await stack.enter_async_context(aiohttp.ClientSession())
        media_session = await stack.enter_async_context(aiohttp.ClientSession())

        fake: FakeSuno | None = None
        fake_url: str | None = None
        api_key = settings.suno_api_key
        suno_base_url = settings.suno_base_url
        callback_base_url = settings.public_base_url
        if api_key is None:
            from clipjobs_suno.fake import running_fake_suno

            api_key = f"demo-{secrets.token_hex(8)}"
            redactor.add(api_key)
            demo_url, fake = await stack.enter_async_context(
                running_fake_suno("127.0.0.1", 0, api_key=api_key, **DEMO_FAKE_TIMINGS)
            )
            fake_url = suno_base_url = demo_url
            # The fake calls back on loopback; nothing leaves this machine.
            callback_base_url = callback_base_url or url
            say(
                f"DEMO MODE: no SUNO_API_KEY, so a fake Suno runs in this process at {fake_url};"
                " nothing is sent to Suno and no credits are spent"
            )

        client = SunoApiClient(suno_session, api_key, base_url=suno_base_url, metrics=metrics)
        budget = await open_budget(settings, clock, metrics)
        stack.push_async_callback(budget.aclose)
        keeper = await media_keeper(settings, media_session, suno_base_url)
        kept_routes = None
        if keeper is not None:
            kept_routes, media_key = await kept_media_routes(store, settings, clock)
            redactor.add(media_key)

        def own_routes(app: web.Application) -> None:
            """Kept media and webhook subscriptions, before the /media catch-all."""
            if kept_routes is not None:
                kept_routes(app)
            add_webhook_routes(app, store, settings)

        composed = await compose(
            stack,
            sock,
            store=store,
            suno=client,
            signer=WebhookSigner(secret),
            authenticator=TokenAuthenticator(tokens, settings.admin_tokens),
            clock=clock,
            budget=budget,
            metrics=metrics,
            params=ChannelDefaults(
                GenerationParams(
                    prompt="An upbeat instrumental track for a short video",
                    instrumental=True,
                    model=settings.suno_model,
                )
            ),
            service_config=ServiceConfig(
                policy=settings.policy(),
                stale_after_s=settings.stale_after_s,
                one_job_per_channel=settings.one_job_per_channel,
                callback_base_url=callback_base_url,
                max_active_per_user=settings.max_active_per_user,
                max_starts_per_user_per_hour=settings.max_starts_per_user_per_hour,
            ),
            worker_config=WorkerConfig(
                **{
                    "owner": settings.worker_id,
                    "suno_call_timeout_s": client.timeouts.generate,
                    "lease_s": settings.lease_s,
                    "heartbeat_s": settings.worker_heartbeat_s,
                    **(worker_config or {}),
                }
            ),
            api_config=api_config,
            # The budgeted client: the lyrics call shares Suno's rate limit.
            post_processor=_post_processor(
                settings, media_session, suno_base_url, BudgetedSuno(client, budget)
            ),
            media_dir=settings.media_dir if settings.clip_render else None,
            media_keeper=keeper,
            routes=own_routes,
            http=HttpLimits(
                max_connections=settings.max_connections, head_timeout_s=settings.head_timeout_s
            ),
            url=url,
        )
        await start_pruner(stack, settings, store, clock)
        await start_webhooks(stack, store, clock, composed.workers.config.owner, settings, metrics)
        pipeline_log.info(
            "clipjobs serving on %s (store %s, Suno %s%s)",
            url,
            settings.db_url.split("://", 1)[0],
            "fake" if fake is not None else suno_base_url,
            ", clip render on" if settings.clip_render else "",
        )
        yield RunningServer(
            url=url,
            settings=settings,
            service=composed.service,
            store=store,
            workers=composed.workers,
            budget=budget,
            metrics=metrics,
            app=composed.app,
            generated_token=generated,
            fake_suno_url=fake_url,
            fake_suno=fake,
        )


async def serve(
    settings: Settings, *, redactor: RedactingFilter, say: Callable[[str], None]
) -> None:
    """``clipjobs serve``: run until SIGTERM/SIGINT, then drain and stop cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with running_server(settings, redactor=redactor, announce=say) as server:
            say(f"listening on {server.url}")
            if server.demo_link is not None:
                say(f"open {server.demo_link} and press «Запустить Music Clips»")
            await stop.wait()
            say("stopping: draining requests and finishing running steps")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
