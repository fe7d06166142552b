"""A stand-in for Suno's file CDN on 127.0.0.1, with a failure mode per file, and a fake Suno
whose tracks point at it.

The fake Suno serves its own small MP3s and JPEGs; this CDN serves the same
files at the same paths (``/files/<task>/<n>.mp3``, ``.jpeg``), unless told to
fail: answer 503 for a while, HTML instead of audio, announce 2 GB, or
redirect to a host nobody allowed.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from clipjobs_suno.fake import MEDIA_DIR, running_fake_suno

SUNO_KEY = "media-suno-key-0001"


def source(name: str) -> bytes:
    """The bytes the CDN serves for ``1.mp3``, ``2.jpeg``…"""
    n, suffix = name.split(".")
    return (MEDIA_DIR / (f"track-{n}.mp3" if suffix == "mp3" else f"cover-{n}.jpeg")).read_bytes()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Cdn:
    """The file server. ``modes[name]``: ``ok`` (default), ``html``, ``huge``, ``elsewhere``."""

    def __init__(self) -> None:
        self.modes: dict[str, str] = {}
        #: This many requests, whatever the file, answer 503 first.
        self.fail_next = 0
        self.hits: Counter[str] = Counter()
        self.port = 0
        self.app = web.Application()
        self.app.router.add_get("/files/{task}/{name}", self._file)

    async def _file(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.hits[name] += 1
        if self.fail_next > 0:
            self.fail_next -= 1
            raise web.HTTPServiceUnavailable()
        mode = self.modes.get(name, "ok")
        if mode == "html":
            return web.Response(
                text="<html><body>Not found</body></html>", content_type="text/html"
            )
        if mode == "huge":
            response = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
            response.content_length = 2 * 1024**3
            await response.prepare(request)
            await response.write(b"\xff\xd8" * 512)
            return response
        if mode == "elsewhere":
            raise web.HTTPFound(f"http://localhost:{self.port}{request.path}x")
        kind = "audio/mpeg" if name.endswith(".mp3") else "image/jpeg"
        return web.Response(body=source(name), content_type=kind)


@contextlib.asynccontextmanager
async def cdn_and_fake() -> AsyncIterator[tuple[Cdn, dict[str, Any]]]:
    """The CDN and a quick fake Suno whose file URLs point at it; ``served`` settings for both."""
    cdn = Cdn()
    runner = web.AppRunner(cdn.app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    cdn.port = runner.addresses[0][1]
    cdn_url = f"http://127.0.0.1:{cdn.port}"
    try:
        async with running_fake_suno(
            api_key=SUNO_KEY,
            public_url=cdn_url,
            text_after_s=0.05,
            first_after_s=0.1,
            complete_after_s=0.15,
        ) as (fake_url, _fake):
            with socket.socket() as probe:  # the server's own port, for Suno's callbacks
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            yield (
                cdn,
                {
                    "port": port,
                    "public_base_url": f"http://127.0.0.1:{port}",
                    "suno_api_key": SUNO_KEY,
                    "suno_base_url": fake_url,
                    "clip_hosts": (f"127.0.0.1:{cdn.port}",),
                    "poll_after_s": 0.05,
                    "poll_interval_s": 0.05,
                },
            )
    finally:
        await runner.cleanup()
