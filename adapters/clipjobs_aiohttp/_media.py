"""``add_media``: the finished media files of ``CLIPJOBS_MEDIA_DIR``, and nothing else there.

The directory also holds what is not finished: the renderer's hidden
``.work-<job>-<random>`` directories with half-written MP4s and downloads,
and whatever dotfiles an operator's tools leave. ``add_static`` would serve
all of it. Here a path is served only when every segment starts with a letter
or digit (no dotfile, no ``.work-*``, no ``..``), its suffix is a media type,
and it resolves to a regular file inside the directory (no symlink out).
Anything else is the same 404 as a missing file, logged and counted as 404.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

__all__ = ["MEDIA_SUFFIXES", "MediaFile", "add_media"]

#: What a clip or a stored track may be.
MEDIA_SUFFIXES = frozenset({".mp4", ".mp3", ".m4a", ".wav", ".ogg", ".jpg", ".jpeg", ".png"})

_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")
_IMMUTABLE = "public, max-age=31536000, immutable"


class MediaFile(web.FileResponse):
    """A file answer that reports the status it was sent with to ``on_sent``.

    aiohttp settles a file's status (200, 206, 304, 416, or 404 if it vanished)
    only while sending it, after the middleware has seen the response.
    """

    def __init__(self, path: Path, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self.on_sent: Callable[[int], None] | None = None

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        try:
            return await super().prepare(request)
        finally:
            report, self.on_sent = self.on_sent, None
            if report is not None:
                report(self.status)


def _finished_file(root: Path, parts: list[str]) -> Path | None:
    """The file ``parts`` names inside ``root``, if it is a regular file there (blocking)."""
    try:
        real_root = root.resolve(strict=True)
        path = real_root.joinpath(*parts).resolve(strict=True)
    except (OSError, RuntimeError):  # missing, unreadable, or a symlink loop
        return None
    if not path.is_relative_to(real_root) or not path.is_file():
        return None
    return path


def add_media(
    app: web.Application,
    media_dir: Path,
    prefix: str = "/media",
    *,
    suffixes: Iterable[str] = MEDIA_SUFFIXES,
) -> None:
    """Serve the finished files of ``media_dir`` at ``prefix`` (Range requests included).

    Names never change content (a clip is ``<job_id>.mp4``, published by one
    rename), so answers may be cached for a year.
    """
    allowed = frozenset(s.lower() for s in suffixes)

    async def media(request: web.Request) -> web.StreamResponse:
        relative = request.match_info["path"]
        parts = relative.split("/")
        if (
            not all(_SEGMENT.fullmatch(part) for part in parts)
            or PurePosixPath(relative).suffix.lower() not in allowed
        ):
            raise web.HTTPNotFound()
        loop = asyncio.get_running_loop()
        path = await loop.run_in_executor(None, _finished_file, media_dir, parts)
        if path is None:
            raise web.HTTPNotFound()
        return MediaFile(
            path,
            headers={"Cache-Control": _IMMUTABLE, "X-Content-Type-Options": "nosniff"},
        )

    app.router.add_get(prefix.rstrip("/") + "/{path:.+}", media, name="clipjobs-media")
