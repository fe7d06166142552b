"""Cancel mid-render and re-render from the clip (SPEC 10.2) with real ffmpeg and ffprobe."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from _ffmpeg_harness import (
    FFMPEG,
    FFPROBE,
    NEEDS_FFMPEG,
    MediaServer,
    encoding_pid,
    ffmpeg_children,
    gone,
    listing,
    probe,
    processor,
)

from clipjobs import (
    ChannelDefaults,
    InMemoryEventStore,
    JobPolicy,
    JobRequest,
    JobService,
    Observation,
    ProviderStatus,
    RecordObservation,
    ServiceConfig,
    Source,
    Stage,
    SunoSucceeded,
    SystemClock,
    Track,
    WebhookSigner,
)
from clipjobs.testing import ScriptedSuno
from clipjobs_ffmpeg import FfmpegPostProcessor

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.skipif(FFMPEG is None or FFPROBE is None, reason=NEEDS_FFMPEG),
]


def _service(
    proc: FfmpegPostProcessor,
    store: InMemoryEventStore,
    suno: ScriptedSuno,
    **config: Any,
) -> JobService:
    return JobService(
        store,
        suno,
        ChannelDefaults(),
        WebhookSigner("secret-for-tests"),
        clock=SystemClock(),
        config=ServiceConfig(
            callback_base_url="https://clips.example",
            policy=JobPolicy(clip_render=True),
            **config,
        ),
        post_processor=proc,
    )


async def _succeeded(service: JobService, audio_url: str) -> str:
    job = (await service.start_job(JobRequest("channel_ff", "u1"))).job
    sent = await service.send(job.job_id)
    assert sent.task_id is not None
    tracks = (Track("song-1", audio_url=audio_url, duration=80.0),)
    observation = Observation(sent.task_id, ProviderStatus.SUCCESS, tracks)
    state, _ = await service.execute(
        job.job_id, lambda at: RecordObservation(observation, Source.CALLBACK, at)
    )
    assert state.stage is Stage.SUNO_SUCCESS
    return job.job_id


async def test_cancel_mid_render_kills_ffmpeg_and_removes_the_partial_file(
    server: MediaServer, session: aiohttp.ClientSession, media_dir: Path
) -> None:
    proc = processor(session, media_dir, clip_max_s=60.0, fps=25.0, preset="veryfast")
    service = _service(proc, InMemoryEventStore(), ScriptedSuno())
    job_id = await _succeeded(service, server.url("/long.mp3"))
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
    hasty = _service(
        processor(session, media_dir, clip_max_s=60.0, fps=25.0, preset="veryfast"),
        store,
        suno,
        render_timeout_s=0.5,
    )
    parent = await _succeeded(hasty, server.url("/long.mp3"))
    failed = await hasty.render(parent)
    assert (failed.stage, failed.error_code) == (Stage.FAILED, "CLIP_RENDER_TIMEOUT")
    assert failed.can_rerender and failed.retryable
    calls = (len(suno.generated), len(suno.polled), suno.credit_checks, len(suno.lyrics_asked))

    patient = _service(processor(session, media_dir), store, suno)
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
