"""Cancel mid-render and re-render from the clip (SPEC 10.2) with real ffmpeg and ffprobe."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
from _ffmpeg_harness import (
    ASYNC_WITH_FFMPEG,
    MediaServer,
    clip_service,
    encoding_pid,
    ffmpeg_children,
    gone,
    listing,
    probe,
    processor,
    succeeded,
)

from clipjobs import InMemoryEventStore, JobService, Source, Stage, SunoSucceeded, Track
from clipjobs.testing import ScriptedSuno

pytestmark = ASYNC_WITH_FFMPEG


async def _succeeded(service: JobService, server: MediaServer) -> str:
    """A job whose one track is the media server's 80 s song, long enough to stop mid-render."""
    return await succeeded(
        service, Track("song-1", audio_url=server.url("/long.mp3"), duration=80.0)
    )


async def test_cancel_mid_render_kills_ffmpeg_and_removes_the_partial_file(
    server: MediaServer, session: aiohttp.ClientSession, media_dir: Path
) -> None:
    proc = processor(session, media_dir, clip_max_s=60.0, fps=25.0, preset="veryfast")
    service = clip_service(proc)
    job_id = await _succeeded(service, server)
    rendering = asyncio.create_task(service.render(job_id))
    pid = await encoding_pid(proc, job_id, rendering)

    cancelled = await service.cancel(job_id, by="u1", reason="not this one")
    final = await asyncio.wait_for(rendering, 30)  # a bound for a hang, not a timing

    assert cancelled.stage is Stage.CANCELLED
    assert final.stage is Stage.CANCELLED and final.clip_url is None
    assert gone(pid) and ffmpeg_children() == []
    assert listing(media_dir) == []  # the half-written MP4 went with its work directory


async def test_rerender_after_a_render_failure_calls_no_suno(
    server: MediaServer, session: aiohttp.ClientSession, media_dir: Path
) -> None:
    """The first render times out; a retry from the clip reuses the song: the child's log is
    JobAccepted then SunoSucceeded (reused), no Suno call is made, and the MP4 plays."""
    store, suno = InMemoryEventStore(), ScriptedSuno()
    hasty = clip_service(
        processor(session, media_dir, clip_max_s=60.0, fps=25.0, preset="veryfast"),
        store,
        suno,
        render_timeout_s=0.5,
    )
    parent = await _succeeded(hasty, server)
    failed = await hasty.render(parent)
    assert (failed.stage, failed.error_code) == (Stage.FAILED, "CLIP_RENDER_TIMEOUT")
    assert failed.can_rerender and failed.retryable
    calls = (len(suno.generated), len(suno.polled), suno.credit_checks, len(suno.lyrics_asked))

    patient = clip_service(processor(session, media_dir), store, suno)
    child = (await patient.retry(parent, "u1", mode="clip")).job
    log = [r.event for r in await store.read(child.job_id)]
    assert [type(e).__name__ for e in log] == ["JobAccepted", "SunoSucceeded"]
    assert isinstance(log[1], SunoSucceeded) and log[1].source is Source.REUSED
    final = await patient.render(child.job_id)

    assert final.stage is Stage.CLIP_READY and final.retry_of == parent
    after = (len(suno.generated), len(suno.polled), suno.credit_checks, len(suno.lyrics_asked))
    assert after[:3] == calls[:3]  # no generate, no poll, no credit check
    streams = {s["codec_type"]: s for s in probe(media_dir / f"{child.job_id}.mp4")["streams"]}
    assert streams["video"]["codec_name"] == "h264" and streams["audio"]["codec_name"] == "aac"
    assert (await patient.get(parent, "u1")).retried_by == child.job_id
