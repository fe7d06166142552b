"""The composition of media keeping (SPEC 10.4) for ``clipjobs serve``.

``media_keeper`` makes the :class:`~clipjobs_ffmpeg.FileMediaKeeper` the service
copies succeeded jobs' files with (same allowed hosts as post-processing), or
None when ``CLIPJOBS_KEEP_MEDIA=off``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import timedelta

import aiohttp
from aiohttp import web

from clipjobs.app.config import Settings
from clipjobs.app.logs import pipeline_log
from clipjobs.app.ports import Clock, EventStore
from clipjobs.app.retention import Pruner, RetentionStore
from clipjobs.app.webhook import new_secret
from clipjobs.domain.errors import ConfigError
from clipjobs_aiohttp import MediaUrlSigner, add_kept_media
from clipjobs_ffmpeg import KEPT_DIR, FileMediaKeeper, KeptFiles

__all__ = [
    "MEDIA_URL_SECRET_NAME",
    "kept_media_routes",
    "media_keeper",
    "start_pruner",
]

#: The store's name for the key kept media URLs are signed with (shared by every process).
MEDIA_URL_SECRET_NAME = "media-url"  # noqa: S105 -- the name of a secret, not one


def make_media_dir(settings: Settings) -> None:
    """``CLIPJOBS_MEDIA_DIR`` exists (made if needed), or one clear ConfigError."""
    try:
        settings.media_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"CLIPJOBS_MEDIA_DIR={str(settings.media_dir)!r} cannot be created: {exc.strerror}"
        ) from None


async def media_keeper(
    settings: Settings, session: aiohttp.ClientSession, suno_base_url: str
) -> FileMediaKeeper | None:
    """The media keeper, with its directory made and a crash's part files swept; or None."""
    if not settings.keep_media:
        return None
    make_media_dir(settings)
    keeper = FileMediaKeeper(
        session, settings.media_dir, allowed_hosts=[suno_base_url, *settings.clip_hosts]
    )
    swept = await asyncio.to_thread(keeper.sweep)
    if swept:
        pipeline_log.info("media: removed %d part files left by an interrupted copy", swept)
    return keeper


async def kept_media_routes(
    store: EventStore, settings: Settings, clock: Clock
) -> tuple[Callable[[web.Application], None], str]:
    """What serves the kept files at signed, expiring URLs (and shows them in job bodies):
    a function adding the routes to the app, and the signing key (for the redactor)."""
    secret = await store.ensure_secret(MEDIA_URL_SECRET_NAME, new_secret())
    signer = MediaUrlSigner(secret)

    def add(app: web.Application) -> None:
        add_kept_media(app, settings.media_dir / KEPT_DIR, signer, clock.now)

    return add, secret


async def start_pruner(
    stack: contextlib.AsyncExitStack, settings: Settings, store: EventStore, clock: Clock
) -> Pruner | None:
    """The background pruner when ``CLIPJOBS_RETENTION_DAYS`` is set (closed with ``stack``)."""
    if settings.retention_days <= 0 or not isinstance(store, RetentionStore):
        return None
    pruner = Pruner(
        store,
        clock,
        timedelta(days=settings.retention_days),
        media=KeptFiles(settings.media_dir),
    )
    pruner.start()
    stack.push_async_callback(pruner.aclose)
    return pruner
