"""JobService.render with FfmpegPostProcessor: STAGE_50 → 60 → 70, or 90 with the code."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from _ffmpeg_harness import (
    ASYNC_WITH_FFMPEG,
    MediaServer,
    clip_service,
    encoding_pid,
    ffmpeg_children,
    listing,
    probe,
    processor,
    succeeded,
)

from clipjobs import ClipStep, ClipStepReached, JobService, Stage, Track, Work
from clipjobs_ffmpeg import ClipErrorCode

pytestmark = ASYNC_WITH_FFMPEG


async def _succeeded(service: JobService, audio_url: str, image_url: str = "") -> str:
    """A job that went through send and Suno's success, with tracks on the media server."""
    return await succeeded(
        service,
        Track("song-1", audio_url=audio_url, image_url=image_url, duration=4.08),
        Track("song-2", audio_url=audio_url.replace("track-1", "track-2")),
    )


async def _steps(service: JobService, job_id: str) -> list[ClipStep]:
    return [
        r.event.step
        for r in await service.store.read(job_id)
        if isinstance(r.event, ClipStepReached)
    ]


async def test_render_reaches_clip_ready(
    server: MediaServer, session: aiohttp.ClientSession, media_dir: Path
) -> None:
    """A clip_render job goes 50 → 60 → 70 with clip_url; the log shows downloading, rendering."""
    service = clip_service(processor(session, media_dir))
    job_id = await _succeeded(
        service, server.url("/media/track-1.mp3"), server.url("/media/cover-1.jpeg")
    )

    final = await service.render(job_id)

    assert final.stage is Stage.CLIP_READY and final.done
    assert final.clip_url == f"/media/{job_id}.mp4"
    assert final.audio_url == server.url("/media/track-1.mp3")
    assert await _steps(service, job_id) == [ClipStep.DOWNLOADING, ClipStep.RENDERING]
    streams = {s["codec_type"]: s for s in probe(media_dir / f"{job_id}.mp4")["streams"]}
    assert (streams["video"]["width"], streams["video"]["height"]) == (1080, 1920)
    assert streams["audio"]["codec_name"] == "aac"
    assert final.work is None


async def test_failed_render_keeps_the_audio_url(
    server: MediaServer, session: aiohttp.ClientSession, media_dir: Path
) -> None:
    """A corrupt audio file ends in STAGE_90 with CLIP_RENDER_FAILED; audio_url stays visible."""
    service = clip_service(processor(session, media_dir))
    job_id = await _succeeded(service, server.url("/corrupt.mp3"))

    final = await service.render(job_id)

    assert final.stage is Stage.FAILED and final.done
    assert final.error_code == ClipErrorCode.CLIP_RENDER_FAILED
    assert final.error_message is not None and "ffmpeg exited with" in final.error_message
    assert final.audio_url == server.url("/corrupt.mp3")
    assert final.clip_url is None
    assert listing(media_dir) == []


async def test_disallowed_host_fails_the_job(
    server: MediaServer, session: aiohttp.ClientSession, media_dir: Path
) -> None:
    """Audio on a host outside the allowed ones: STAGE_90 CLIP_HOST_NOT_ALLOWED, nothing fetched."""
    service = clip_service(processor(session, media_dir))
    job_id = await _succeeded(service, server.url("/media/track-1.mp3", host="localhost"))

    final = await service.render(job_id)

    assert (final.stage, final.error_code) == (Stage.FAILED, ClipErrorCode.CLIP_HOST_NOT_ALLOWED)
    assert sum(server.hits.values()) == 0


async def test_service_timeout_kills_ffmpeg(
    server: MediaServer, session: aiohttp.ClientSession, media_dir: Path
) -> None:
    """The service's render timeout cancels a hanging render: CLIP_RENDER_TIMEOUT, no leftovers."""
    proc = processor(session, media_dir, clip_max_s=60.0, fps=25.0, preset="veryfast")
    service = clip_service(proc, render_timeout_s=1.0)
    job_id = await _succeeded(service, server.url("/long.mp3"))

    final = await service.render(job_id)

    assert (final.stage, final.error_code) == (Stage.FAILED, "CLIP_RENDER_TIMEOUT")
    assert final.audio_url == server.url("/long.mp3")
    assert ffmpeg_children() == []
    assert listing(media_dir) == []


async def test_crash_mid_render_resumes(
    server: MediaServer, session: aiohttp.ClientSession, media_dir: Path
) -> None:
    """A render cancelled mid-encode leaves the job in STAGE_60; render() again reaches STAGE_70."""
    slow = processor(session, media_dir, clip_max_s=60.0, fps=25.0, preset="veryfast")
    service = clip_service(slow)
    job_id = await _succeeded(service, server.url("/long.mp3"))

    task = asyncio.create_task(service.render(job_id))
    await encoding_pid(slow, job_id, task)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    stuck = await service.store.load(job_id)
    assert stuck is not None
    assert stuck.stage is Stage.CLIP_PROCESSING and stuck.clip_step is ClipStep.RENDERING
    assert stuck.work is Work.RENDER
    assert listing(media_dir) == []
    assert ffmpeg_children() == []

    # The restarted process: same store, a fresh processor (fast settings for the test).
    service.post_processor = processor(session, media_dir)
    final = await service.render(job_id)

    assert final.stage is Stage.CLIP_READY
    assert final.clip_url == f"/media/{job_id}.mp4"
    assert listing(media_dir) == [f"{job_id}.mp4"]
    steps = await _steps(service, job_id)
    assert steps == [ClipStep.DOWNLOADING, ClipStep.RENDERING] * 2


async def test_crash_after_the_rename_finishes_without_rendering(
    server: MediaServer, session: aiohttp.ClientSession, media_dir: Path
) -> None:
    """A job in STAGE_60 whose clip file exists reaches STAGE_70 with no download at all."""
    service = clip_service(processor(session, media_dir))
    job_id = await _succeeded(service, server.url("/media/track-1.mp3"))
    media_dir.mkdir()
    (media_dir / f"{job_id}.mp4").write_bytes(b"renamed just before the crash")

    final = await service.render(job_id)

    assert final.stage is Stage.CLIP_READY
    assert server.hits["127.0.0.1/media/track-1.mp3"] == 0
