"""Issue #24 items 1 and 2: a token that is not UTF-8, and log lines a client tries to forge."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from _serving import Served, bearer, get, served, status_of

pytestmark = pytest.mark.asyncio

JOB = "job_1767225600000_abcdef"
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z [A-Z]+ ")


def _concrete(path: str) -> str:
    path = path.replace("{job_id}", JOB).replace("{channel_id}", "c1").replace("{name}", "x")
    return path.replace("{subscription_id}", "sub_" + "0" * 24)


def _routes(running: Served) -> list[tuple[str, str]]:
    """Every (method, path) the served app answers, with its placeholders filled in."""
    found = set()
    for route in running.server.app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("formatter") or info.get("path") or info.get("prefix")
        if path and route.method in ("GET", "POST"):
            found.add((route.method, _concrete(path)))
    return sorted(found)


async def test_a_non_utf8_bearer_token_is_401_on_every_route_and_one_log_line(
    tmp_path: Path,
) -> None:
    """``Bearer tok-…\\xff`` (\\x80, \\xe9): 401 on every API route, one log line each."""
    async with served(tmp_path) as running:
        routes = _routes(running)
        assert ("POST", "/api/music-clips/channels/c1/runOnce") in routes
        for method, path in routes:
            for bad in (b"\xff", b"\x80", b"\xe9"):
                token = b"tok-" + b"a" * 12 + bad
                mark = running.mark()
                head = get(path, bearer(token), b"Content-Length: 0").replace(
                    b"GET ", method.encode() + b" ", 1
                )
                answer = await running.request(head)
                status = status_of(answer)
                assert status < 500, (method, path, answer[:200])
                if path.startswith("/api/music-clips/") and not path.endswith("openapi.json"):
                    assert status == 401, (method, path, answer[:200])
                lines = await running.lines_logged(mark)
                assert len(lines) == 1, (method, path, lines)
                assert "unhandled" not in lines[0] and "Traceback" not in lines[0]
        assert await running.server.store.list_jobs("alice", "c1") == []


async def test_a_newline_in_the_url_cannot_forge_a_log_line(tmp_path: Path) -> None:
    """The issue's ``%0a…FORGED`` URL and a ``%1b[31m`` one each write exactly one escaped line."""
    forged = (
        "/api/music-clips/jobs/x%0a2026-12-01T00:00:00.000Z%20ERROR%20clipjobs.pipeline%20FORGED"
    )
    async with served(tmp_path) as running:
        for path in (forged, "/api/music-clips/jobs/x%1b[31m", "/api/music-clips/jobs/x%0d%85"):
            mark = running.mark()
            answer = await running.request(get(path, bearer()))
            assert status_of(answer) == 404
            lines = running.lines_since(mark)
            assert len(lines) == 1, lines
            assert LOG_LINE.match(lines[0]) and " INFO clipjobs.pipeline GET " in lines[0]
            assert not re.search("[\x00-\x1f\x7f-\x9f]", lines[0]), lines[0]
        text = running.log.getvalue()
    assert "x\\n2026-12-01T00:00:00.000Z ERROR clipjobs.pipeline FORGED 404" in text
    assert "x\\x1b[31m 404" in text
    assert not [line for line in text.split("\n") if line.startswith("2026-12-01T00:00:00.000Z")]


async def test_a_malformed_authorization_header_leaves_nothing_of_itself_in_the_log(
    tmp_path: Path,
) -> None:
    """``Authorization: Bearer …\\x001234`` is refused; its one log line quotes none of it."""
    async with served(tmp_path) as running:
        mark = running.mark()
        answer = await running.request(
            get(f"/api/music-clips/jobs/{JOB}", b"Authorization: Bearer tok-abc\x001234")
        )
        assert status_of(answer) == 400
        lines = running.lines_since(mark)
    assert len(lines) == 1, lines
    assert "bad HTTP request from 127.0.0.1" in lines[0] and " WARNING " in lines[0]
    for part in ("1234", "tok-abc", "Bearer", "***"):
        assert part not in lines[0], lines[0]
