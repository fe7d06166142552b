"""Issue #24 item 4 (the adapter's part): what one callback may carry is bounded at parsing."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from _serving import TOKEN, Served, bearer, json_of, post, served, status_of

from clipjobs.domain.codec import encode_event
from clipjobs_suno._parse import MAX_TRACKS

pytestmark = pytest.mark.asyncio


def _complete(task_id: str) -> bytes:
    """The issue's input: a ``complete`` callback with 1,000 tracks of 900-character URLs."""
    url = "https://cdn.example/" + "a" * 880
    assert len(url) == 900
    tracks = [{"id": f"track-{i:04d}", "audio_url": url, "title": "t" * 20} for i in range(1000)]
    body = {
        "code": 200,
        "msg": "All generated successfully.",
        "data": {"callbackType": "complete", "task_id": task_id, "data": tracks},
    }
    raw = json.dumps(body).encode()
    assert 960_000 < len(raw) < 1024 * 1024  # the 967 KB, under the 1 MiB body cap
    return raw


async def _task_of(running: Served, job_id: str) -> str:
    async with asyncio.timeout(30):  # a hang guard: the sender hands the job to the fake at once
        while True:
            state = await running.server.store.load(job_id)
            if state is not None and state.task_id is not None:
                return state.task_id
            await asyncio.sleep(0.02)


async def test_a_1000_track_callback_replayed_10_times_stores_a_few_kib(tmp_path: Path) -> None:
    """The valid-token ``complete`` callback of 967 KB, then 10 replays after the end: small log.

    It was 10 × 1 MB of late observations. Now each observation keeps two tracks
    with their 900-character URLs (under the 2 KiB cap).
    """
    async with served(tmp_path) as running:
        answer = await running.request(post("/api/music-clips/channels/c1/runOnce", b"", bearer()))
        assert status_of(answer) == 202, answer
        job_id = json_of(answer)["jobId"]
        task_id = await _task_of(running, job_id)
        before = len(await running.server.store.read(job_id))
        token = running.server.service.signer.token(job_id)
        hook = f"/api/webhooks/suno/music?job={job_id}&token={token}"
        body = _complete(task_id)
        for _ in range(11):
            answer = await running.request(post(hook, body))
            assert status_of(answer) == 200, answer[:300]
        state = await running.server.store.load(job_id)
        events = (await running.server.store.read(job_id))[before:]
        job = json_of(
            await running.request(
                f"GET /api/music-clips/jobs/{job_id} HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n".encode()
            )
        )
    assert state is not None and state.done
    assert len(state.tracks) == MAX_TRACKS
    assert [t["audioUrl"] for t in job["tracks"]] == ["https://cdn.example/" + "a" * 880] * 2
    sizes = [len(encode_event(e.event)[1]) for e in events]
    assert sizes and max(sizes) < 8 * 1024, sizes
    assert sum(sizes) < 11 * 8 * 1024, sizes
