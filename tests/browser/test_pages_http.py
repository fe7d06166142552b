"""How the pages are served: types, caching, the security policy, mounting (no browser needed)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from _browser_harness import ROOT, Stack, running_stack

import clipjobs_aiohttp

STATIC = Path(clipjobs_aiohttp.__file__).parent / "static"


@pytest_asyncio.fixture(params=["", "/clips"], ids=["root", "mounted"])
async def served(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(tmp_path, prefix=request.param) as stack:
        yield stack


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def _asset_urls(html: str) -> list[str]:
    return re.findall(r'(?:href|src)="([^"#]*static/[^"]+)"', html)


@pytest.mark.asyncio
async def test_pages_are_html_with_a_strict_policy(
    served: Stack, http: aiohttp.ClientSession
) -> None:
    """Both pages: UTF-8 HTML, revalidated on each load, scripts and styles from here only."""
    for path in ("/", "/music-clips/jobs/job_1767225600000_abcdef"):
        async with http.get(served.url + path) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "text/html; charset=utf-8"
            assert response.headers["Cache-Control"] == "no-cache"
            csp = response.headers["Content-Security-Policy"]
            directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
            assert directives["default-src"] == "'none'"
            assert directives["script-src"] == "'self'"
            assert directives["style-src"] == "'self'"
            assert directives["connect-src"] == "'self'"
            assert directives["frame-ancestors"] == "'none'"
            assert "unsafe" not in csp
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert response.headers["Referrer-Policy"] == "no-referrer"
            assert response.headers["X-Request-Id"].startswith("req_")
            html = await response.text()
        # Nothing inline for the policy to block, nothing from elsewhere.
        assert re.search(r"<script(?![^>]*\bsrc=)", html) is None
        assert " style=" not in html and "<style" not in html
        assert " on" not in re.sub(r"<[^>]*\bcontent=\"[^\"]*\"", "", html).replace("\n", " ")
        assert "http://" not in html and "https://" not in html
        assert "Запустить" in html


@pytest.mark.asyncio
async def test_assets_are_versioned_by_content_and_cached_for_a_year(
    served: Stack, http: aiohttp.ClientSession
) -> None:
    """The pages name their assets by content hash; those answer with long caching and 304s."""
    async with http.get(served.url + "/music-clips/jobs/job_1767225600000_abcdef") as response:
        job_html = await response.text()
    async with http.get(served.url + "/") as response:
        index_html = await response.text()
    expected = {"clipjobs.js": "text/javascript", "clipjobs.css": "text/css"}
    for html, base in ((index_html, "/"), (job_html, "/music-clips/jobs/")):
        urls = _asset_urls(html)
        assert sorted(u.split("/")[-1].split("?")[0] for u in urls) == sorted(expected)
        for url in urls:
            assert not url.startswith("/"), "relative, so a mounted app finds them"
            absolute = str(aiohttp.client.URL(served.url + base).join(aiohttp.client.URL(url)))
            assert absolute.startswith(served.url + "/music-clips/static/")
            async with http.get(absolute) as response:
                assert response.status == 200
                name = url.split("/")[-1].split("?")[0]
                assert response.headers["Content-Type"] == f"{expected[name]}; charset=utf-8"
                assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
                assert await response.read() == (STATIC / name).read_bytes()
                etag = response.headers["ETag"]
                assert url.endswith("?v=" + etag.strip('"'))
            async with http.get(absolute, headers={"If-None-Match": etag}) as response:
                assert response.status == 304
                assert await response.read() == b""


@pytest.mark.asyncio
async def test_an_unversioned_asset_is_revalidated_and_unknown_ones_are_404(
    served: Stack, http: aiohttp.ClientSession
) -> None:
    """Without the hash an asset may be stale, so it is not cached; other names do not exist."""
    async with http.get(served.url + "/music-clips/static/clipjobs.js?v=old") as response:
        assert response.status == 200
        assert response.headers["Cache-Control"] == "no-cache"
    for name in ("index.html", "..%2F_pages.py", "nope.js"):
        async with http.get(served.url + "/music-clips/static/" + name) as response:
            assert response.status == 404


@pytest.mark.asyncio
async def test_head_answers_like_get_without_a_body(
    served: Stack, http: aiohttp.ClientSession
) -> None:
    """HEAD on a page gives GET's headers and no body."""
    async with http.head(served.url + "/") as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        assert await response.read() == b""


def test_the_static_files_are_inside_the_package() -> None:
    """The files ship inside clipjobs_aiohttp (hatch packages the whole directory)."""
    assert STATIC.is_relative_to(ROOT / "adapters" / "clipjobs_aiohttp")
    assert sorted(p.name for p in STATIC.iterdir()) == [
        "admin.css",
        "admin.html",
        "admin.js",
        "clipjobs.css",
        "clipjobs.js",
        "index.html",
        "job.html",
    ]
    text = (ROOT / "pyproject.toml").read_text()
    assert '"adapters/clipjobs_aiohttp",' in text
