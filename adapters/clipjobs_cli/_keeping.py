"""The composition of media keeping (SPEC 10.4) for ``clipjobs serve``.

``media_keeper`` makes the :class:`~clipjobs_ffmpeg.FileMediaKeeper` the service
copies succeeded jobs' files with (same allowed hosts as post-processing), or
None when ``CLIPJOBS_KEEP_MEDIA=off``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import aiohttp

from clipjobs.config import Settings
from clipjobs.errors import ConfigError
from clipjobs.logs import pipeline_log

if TYPE_CHECKING:
    from clipjobs_ffmpeg import FileMediaKeeper

__all__ = ["media_keeper"]


async def media_keeper(
    settings: Settings, session: aiohttp.ClientSession, suno_base_url: str
) -> FileMediaKeeper | None:
    """The media keeper, with its directory made and a crash's part files swept; or None."""
    if not settings.keep_media:
        return None
    from clipjobs_ffmpeg import FileMediaKeeper

    try:
        settings.media_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"CLIPJOBS_MEDIA_DIR={str(settings.media_dir)!r} cannot be created: {exc.strerror}"
        ) from None
    keeper = FileMediaKeeper(
        session, settings.media_dir, allowed_hosts=[suno_base_url, *settings.clip_hosts]
    )
    swept = await asyncio.to_thread(keeper.sweep)
    if swept:
        pipeline_log.info("media: removed %d part files left by an interrupted copy", swept)
    return keeper
