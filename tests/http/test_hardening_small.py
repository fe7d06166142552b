"""Issue #24 item 9: a second ``x-user-id``, short Suno keys, one Idempotency-Key at a time."""

from __future__ import annotations

from pathlib import Path

import pytest
from _serving import bearer, get, served, status_of

pytestmark = pytest.mark.asyncio


async def test_a_second_x_user_id_header_is_400(tmp_path: Path) -> None:
    """``x-user-id: alice`` then ``x-user-id: bob`` is 400 naming the header; no job is made."""
    async with served(tmp_path) as running:
        for path, method in (
            ("/api/music-clips/channels/c1/runOnce", b"POST"),
            ("/api/music-clips/jobs/job_1767225600000_abcdef", b"GET"),
        ):
            raw = get(path, bearer(), b"x-user-id: alice", b"x-user-id: bob", b"Content-Length: 0")
            answer = await running.request(raw.replace(b"GET", method, 1))
            assert status_of(answer) == 400, answer
            assert b'"field": "x-user-id"' in answer
        assert await running.server.store.list_jobs("alice", "c1") == []
