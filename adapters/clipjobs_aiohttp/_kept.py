"""Kept media (SPEC 10.4): signed, expiring URLs to the copies of a job's files, and their route.

A kept file is named by its content (``<sha256><suffix>``) and served at
``/media/kept/<name>?exp=<unix time>&sig=<hex>``, where ``sig`` is an
HMAC-SHA256 of the name and ``exp`` under a server secret. So the URL needs
no bearer header (an ``<audio>`` tag can play it), cannot be guessed or
forged, and stops working after ``exp``: a missing, forged or expired
signature answers 403, anything that is not a kept file's name 404. The
expiry is rounded up to the next half of ``ttl_s``, so a job's body (and
its ETag) stays the same for a while: every URL handed out is good for at
least ``ttl_s / 2``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from aiohttp import web

from clipjobs.app.keeping import KEPT_SUFFIXES, kept_name
from clipjobs.domain.events import MediaStored

from ._media import _IMMUTABLE, MediaFile

__all__ = ["KEPT_PREFIX", "MEDIA_URLS", "MediaUrlSigner", "add_kept_media"]

KEPT_PREFIX = "/media/kept"
_NAME = re.compile(r"[0-9a-f]{64}\.[a-z0-9]{1,5}")
_SIG = re.compile(r"[0-9a-f]{64}")
_TYPES = {suffix: kind for kind, suffix in reversed(KEPT_SUFFIXES.items())}


class MediaUrlSigner:
    """Makes and checks the signed URLs of kept files."""

    def __init__(self, secret: str, *, ttl_s: float = 86400.0, prefix: str = KEPT_PREFIX) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        self._key = hashlib.sha256(b"clipjobs-kept-media\x00" + secret.encode()).digest()
        self.ttl_s = ttl_s
        self.prefix = prefix.rstrip("/")

    def _sig(self, name: str, exp: int) -> str:
        return hmac.new(self._key, f"{name}\n{exp}".encode(), hashlib.sha256).hexdigest()

    def url(self, kept: MediaStored, now: datetime) -> str:
        """The path and query that serve ``kept`` until at least ``now + ttl_s / 2``."""
        half = self.ttl_s / 2
        exp = int(math.ceil((now.timestamp() + half) / half) * half)
        name = kept_name(kept.sha256, kept.content_type)
        return f"{self.prefix}/{name}?exp={exp}&sig={self._sig(name, exp)}"

    def valid(self, name: str, exp: str, sig: str, now: datetime) -> bool:
        """The signature is this server's for ``name`` and ``exp``, and ``exp`` is not past."""
        if not exp.isdigit() or len(exp) > 12 or not _SIG.fullmatch(sig):
            return False
        if int(exp) < now.timestamp():
            return False
        return hmac.compare_digest(self._sig(name, int(exp)), sig)


#: ``kept -> URL`` for job bodies; absent when media is not kept.
MEDIA_URLS: web.AppKey[Callable[[MediaStored], str]] = web.AppKey("media_urls")


def add_kept_media(
    app: web.Application, kept_dir: Path, signer: MediaUrlSigner, now: Callable[[], datetime]
) -> None:
    """Serve ``kept_dir``'s files at the signer's prefix, and sign the URLs job bodies show.

    Add it before :func:`add_media`, whose catch-all route would take these paths.
    """
    app[MEDIA_URLS] = lambda kept: signer.url(kept, now())

    async def kept(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if not _NAME.fullmatch(name):
            raise web.HTTPNotFound()
        query = request.query
        if not signer.valid(name, query.get("exp", ""), query.get("sig", ""), now()):
            raise web.HTTPForbidden(text="403: this media link is not valid or has expired\n")
        path = kept_dir / name
        if not await asyncio.to_thread(path.is_file):
            raise web.HTTPNotFound()
        content_type = _TYPES.get(path.suffix, "application/octet-stream")
        return MediaFile(
            path,
            headers={
                "Content-Type": content_type,
                "Cache-Control": _IMMUTABLE,
                "X-Content-Type-Options": "nosniff",
            },
        )

    prefix = signer.prefix
    app.router.add_get(prefix + "/{name}", kept, name="clipjobs-kept-media")
    # Whatever else is under the prefix (``..``, nested paths) is no kept file.
    app.router.add_get(prefix + "/{rest:.*}", _not_found)


async def _not_found(_: web.Request) -> web.StreamResponse:
    raise web.HTTPNotFound()
