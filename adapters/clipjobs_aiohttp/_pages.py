"""The start page and the status page: plain files shipped in ``static/``.

Every URL in the pages is relative, so they work wherever the API is mounted.
The HTML is served with ``Cache-Control: no-cache`` (revalidated by ETag) and
names its script and stylesheet with a content hash (``clipjobs.js?v=…``), so
those can be cached for a year and an upgrade still reaches every browser.
"""

from __future__ import annotations

import functools
import hashlib
import re
from importlib import resources

from aiohttp import web
from aiohttp.typedefs import Handler
from attrs import frozen

__all__ = ["CONTENT_SECURITY_POLICY", "STATIC_PATH", "add_pages"]

#: Where the assets live, relative to the app's root.
STATIC_PATH = "/music-clips/static"

#: Scripts and styles from this server only, no inline code, no framing. Media
#: come from the provider's CDN (any host), so ``media-src`` is the one open door.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "img-src 'self' data:",
        "media-src 'self' https: http:",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)

_ASSET_TYPES = {".js": "text/javascript", ".css": "text/css"}
_IMMUTABLE = "public, max-age=31536000, immutable"
_ASSET_REF = re.compile(r'(?P<attr>(?:href|src)="[^"]*static/)(?P<name>[\w.-]+)"')


@frozen
class _File:
    body: bytes
    content_type: str
    etag: str


def _read(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


def _etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:20] + '"'


@functools.cache
def _load() -> tuple[dict[str, _File], dict[str, _File]]:
    """``(pages, assets)``, with the pages' asset URLs versioned by content."""
    assets: dict[str, _File] = {}
    for name in ("clipjobs.js", "clipjobs.css", "admin.js", "admin.css"):
        body = _read(name)
        kind = _ASSET_TYPES[name[name.rindex(".") :]]
        assets[name] = _File(body, kind, _etag(body))

    def versioned(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in assets:
            return match[0]
        return f'{match["attr"]}{name}?v={assets[name].etag.strip(chr(34))}"'

    pages: dict[str, _File] = {}
    for name in ("index.html", "job.html", "admin.html"):
        text = _ASSET_REF.sub(versioned, _read(name).decode("utf-8"))
        body = text.encode("utf-8")
        pages[name] = _File(body, "text/html", _etag(body))
    return pages, assets


def _security_headers() -> dict[str, str]:
    return {
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
    }


def _answer(request: web.Request, file: _File, cache_control: str) -> web.Response:
    headers = {"ETag": file.etag, "Cache-Control": cache_control, **_security_headers()}
    if file.etag in (request.headers.get("If-None-Match") or ""):
        return web.Response(status=304, headers=headers)
    return web.Response(
        body=file.body, content_type=file.content_type, charset="utf-8", headers=headers
    )


def add_pages(app: web.Application) -> None:
    """Register ``GET /``, ``GET /music-clips/jobs/{jobId}`` and the assets on ``app``."""
    pages, assets = _load()

    def page(name: str) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            # The pages hold no data: the token stays in the browser and the job
            # comes from the API, so one cached copy serves every user and job.
            return _answer(request, pages[name], "no-cache")

        return handler

    async def asset(request: web.Request) -> web.Response:
        file = assets.get(request.match_info["name"])
        if file is None:
            raise web.HTTPNotFound()
        versioned = request.query.get("v") == file.etag.strip('"')
        return _answer(request, file, _IMMUTABLE if versioned else "no-cache")

    router = app.router
    router.add_get("/", page("index.html"), name="clipjobs-index")
    router.add_get("/music-clips/jobs/{job_id}", page("job.html"), name="clipjobs-job-page")
    router.add_get(STATIC_PATH + "/{name}", asset, name="clipjobs-static")
    # The fleet (SPEC 10.3): filters in the query string, the token in the fragment.
    router.add_get("/music-clips/admin", page("admin.html"), name="clipjobs-admin-page")
