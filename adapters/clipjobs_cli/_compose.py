"""The one composition root: the parts that differ in, a serving clipjobs out.

Model: cosmicpython's ``bootstrap``. :func:`compose` wires the service, its
workers and the HTTP API from the parts a caller chooses (store, Suno client,
clock, budget, who the users are, configs, post-processor) and serves them
on a socket it is given. ``clipjobs serve`` (``running_server``), the
end-to-end stack, the browser harness and the benches call it with their own
parts; nothing else builds a ``JobService`` and its ``Workers`` for serving.

Order, on the way up and down (``stack`` closes in reverse):

1. the HTTP server answers on ``sock`` (bounded connections, head time limit);
2. the workers start, registered in the store;
3. on exit the workers stop first (no new Suno call; the running ones finish),
   then the HTTP server drains; whatever the caller pushed before (the store,
   sessions, a fake Suno) closes after.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from attrs import frozen

from clipjobs import ChannelDefaults, JobService, ServiceConfig, WorkerConfig, Workers
from clipjobs.app.keeping import MediaKeeper
from clipjobs.app.metrics import Metrics
from clipjobs.app.ports import (
    Authenticator,
    CallBudget,
    Clock,
    EventStore,
    GenerationParamsProvider,
    PostProcessor,
    SunoClient,
)
from clipjobs.app.webhook import WebhookSigner
from clipjobs.domain.errors import ConfigError
from clipjobs_aiohttp import ApiConfig, BoundedSockSite, add_media, create_app

__all__ = ["MEDIA_PREFIX", "Composed", "HttpLimits", "bind", "compose", "url_of"]

MEDIA_PREFIX = "/media"


@frozen
class HttpLimits:
    """How the HTTP server treats connections (SPEC 10.6).

    ``max_connections`` open at once (then 503 and close); a request head must
    arrive within ``head_timeout_s``; ``shutdown_s`` is how long a draining
    server waits for running requests.
    """

    max_connections: int = 1000
    head_timeout_s: float = 15.0
    shutdown_s: float = 5.0


@frozen
class Composed:
    """What :func:`compose` started: the URL it answers on, and its parts."""

    url: str
    service: JobService
    workers: Workers
    app: web.Application


def bind(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening, non-blocking TCP socket (``port=0``: any free port).

    Bound before anything else starts, so the real URL is known to the service
    (for Suno's callbacks) and a taken port fails fast with one clear line.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"CLIPJOBS_HOST={host!r} does not resolve: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


def url_of(sock: socket.socket, host: str = "127.0.0.1") -> str:
    """The ``http://`` URL a bound socket answers on (a wildcard host shown as loopback)."""
    port = sock.getsockname()[1]
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104 -- a comparison
    if shown == "::":
        shown = "::1"
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


async def compose(
    stack: contextlib.AsyncExitStack,
    sock: socket.socket,
    *,
    store: EventStore,
    suno: SunoClient,
    signer: WebhookSigner,
    authenticator: Authenticator,
    clock: Clock,
    budget: CallBudget,
    metrics: Metrics | None = None,
    params: GenerationParamsProvider | None = None,
    service_config: ServiceConfig | None = None,
    worker_config: WorkerConfig | None = None,
    api_config: ApiConfig | None = None,
    post_processor: PostProcessor | None = None,
    media_dir: Path | None = None,
    media_keeper: MediaKeeper | None = None,
    mount: str = "",
    http: HttpLimits | None = None,
    url: str | None = None,
    routes: Callable[[web.Application], None] | None = None,
    start_workers: bool = True,
) -> Composed:
    """Serve clipjobs on ``sock`` from these parts until ``stack`` closes.

    The defaults are production's. ``suno`` is the bare client: the service
    puts every call behind ``budget``. ``media_dir`` serves finished media
    (clips, their captions) at ``/media``; ``media_keeper`` copies finished
    jobs' songs and covers (SPEC 10.4). ``mount`` serves the API under a
    prefix of a parent app, as an embedder would. ``url`` is the address the
    server is reached at (default: the socket's own). ``routes`` adds routes of
    the caller's own before the app is frozen and before ``/media`` (a bench's
    info route, the kept media).
    ``start_workers=False`` serves the API only: the caller may start
    ``Composed.workers`` later (and must close them).
    """
    metrics = metrics or Metrics()
    service = JobService(
        store,
        suno,
        params or ChannelDefaults(),
        signer,
        clock=clock,
        config=service_config or ServiceConfig(),
        budget=budget,
        post_processor=post_processor,
        metrics=metrics,
        media_keeper=media_keeper,
    )
    workers = Workers(service, worker_config or WorkerConfig())
    app = create_app(service, authenticator, api_config, metrics=metrics)
    if routes is not None:
        routes(app)  # before the /media catch-all below
    if media_dir is not None:
        # Before the media route, which serves media types only.
        app.router.add_get(
            MEDIA_PREFIX + r"/{name:[A-Za-z0-9][A-Za-z0-9_-]*}.{kind:srt|ass}",
            _captions_file(media_dir),
        )
        add_media(app, media_dir, MEDIA_PREFIX)
    served = app
    if mount:
        served = web.Application()
        served.add_subapp(mount, app)
    await _serve_http(stack, served, sock, http or HttpLimits(), metrics)
    if start_workers:
        await workers.start()
        # Closed before the HTTP server drains: on SIGTERM no new Suno call starts,
        # only the calls in flight finish.
        stack.push_async_callback(workers.aclose)
    return Composed(url=(url or url_of(sock)) + mount, service=service, workers=workers, app=app)


async def _serve_http(
    stack: contextlib.AsyncExitStack,
    app: web.Application,
    sock: socket.socket,
    limits: HttpLimits,
    metrics: Metrics,
) -> None:
    """Serve ``app`` on ``sock`` until ``stack`` closes, with the connection bounds of #24.

    At most ``max_connections`` open connections (then 503), and a request head
    must arrive within ``head_timeout_s`` of a connection opening or of its
    previous answer (aiohttp's keep-alive timer does both). What is left of a
    refused body (413, 408) is read for 2 s, not aiohttp's 10, so the client
    can read its answer and a trickling one is gone soon.
    """
    runner = web.AppRunner(
        app,
        access_log=None,
        shutdown_timeout=limits.shutdown_s,
        handle_signals=False,
        keepalive_timeout=limits.head_timeout_s,
        lingering_time=2.0,
    )
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    site = BoundedSockSite(runner, sock, max_connections=limits.max_connections, metrics=metrics)
    await site.start()


_CAPTION_TYPES = {"srt": "application/x-subrip", "ass": "text/x-ssa"}


def _captions_file(media_dir: Path) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Serve a clip's captions (``.srt``, ``.ass``) as UTF-8 text of their own type."""

    async def handler(request: web.Request) -> web.StreamResponse:
        kind = request.match_info["kind"]
        path = media_dir / f"{request.match_info['name']}.{kind}"
        if not await asyncio.to_thread(path.is_file):
            raise web.HTTPNotFound()
        content_type = f"{_CAPTION_TYPES[kind]}; charset=utf-8"
        return web.FileResponse(path, headers={"Content-Type": content_type})

    return handler
