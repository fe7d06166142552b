"""Issue #24 item 5: Suno's per-model limits hold for every field in every mode, and no echo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _serving import bearer, json_of, post, served, status_of

pytestmark = pytest.mark.asyncio

RUN = "/api/music-clips/channels/c1/runOnce"
HUGE = 900_000


@pytest.mark.parametrize("field", ["style", "title", "negativeTags", "model"])
async def test_a_900_000_character_field_is_refused_unstored_unechoed(
    tmp_path: Path, field: str
) -> None:
    """``{"style": 900,000 × "x"}`` (title, negativeTags, model alike) outside custom mode: 400.

    The job is not created, nothing is sent to Suno, the answer quotes at most
    200 characters of the input, and no log line carries the value.
    """
    async with served(tmp_path) as running:
        mark = running.mark()
        body = json.dumps({field: "x" * HUGE, "customMode": False}).encode()
        answer = await running.request(post(RUN, body, bearer()))
        assert status_of(answer) == 400, answer[:300]
        error = json_of(answer)
        assert error["error"] == "INVALID_REQUEST" and error["field"] == field
        assert len(error["message"]) <= 200
        assert "x" * 201 not in answer.decode()
        lines = running.lines_since(mark)
        assert lines and all(len(line) < 1000 for line in lines), [len(x) for x in lines]
        assert await running.server.store.list_jobs("alice", "c1") == []
        assert running.server.fake_suno is not None
        assert running.server.fake_suno.tasks() == []
