"""Every way a clip can fail has its own code, and none leaves a file or a process behind."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from _ffmpeg_harness import (
    ASYNC_WITH_FFMPEG,
    MediaServer,
    Steps,
    clip_job,
    encoding_pid,
    ffmpeg_children,
    gone,
    listing,
    processor,
)

from clipjobs import ClipStep, JobState
from clipjobs.domain.errors import PostProcessError
from clipjobs_ffmpeg import ClipErrorCode, FfmpegPostProcessor

pytestmark = ASYNC_WITH_FFMPEG

#: A render that takes seconds: an 80 s song at 25 fps, cut to 60 s.
SLOW = {"clip_max_s": 60.0, "fps": 25.0, "preset": "veryfast"}

CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("/corrupt.mp3", ClipErrorCode.CLIP_RENDER_FAILED, {}),
    ("/missing.mp3", ClipErrorCode.CLIP_DOWNLOAD_FAILED, {}),
    ("/broken.mp3", ClipErrorCode.CLIP_DOWNLOAD_FAILED, {}),
    ("/empty.mp3", ClipErrorCode.CLIP_DOWNLOAD_FAILED, {}),
    ("/loop.mp3", ClipErrorCode.CLIP_DOWNLOAD_FAILED, {}),
    ("/slow.mp3", ClipErrorCode.CLIP_DOWNLOAD_FAILED, {"download_timeout_s": 0.2}),
    ("/media/track-1.mp3", ClipErrorCode.CLIP_TOO_LARGE, {"max_bytes": 4096}),
    ("/chunked.mp3", ClipErrorCode.CLIP_TOO_LARGE, {"max_bytes": 4096}),
    ("/page.mp3", ClipErrorCode.CLIP_BAD_CONTENT_TYPE, {}),
    ("/media/cover-1.jpeg", ClipErrorCode.CLIP_BAD_CONTENT_TYPE, {}),
    ("/away.mp3", ClipErrorCode.CLIP_HOST_NOT_ALLOWED, {}),
]


async def _failure(
    proc: FfmpegPostProcessor, job: JobState, steps: Steps | None = None
) -> PostProcessError:
    """The PostProcessError that processing ``job`` raises (it must raise one)."""
    with pytest.raises(PostProcessError) as info:
        await proc.process(job, steps if steps is not None else Steps())
    return info.value


async def _encoding(
    proc: FfmpegPostProcessor, server: MediaServer
) -> tuple[JobState, asyncio.Task[Any], int]:
    """A job of the long song and its cover processing in a task, once ffmpeg encodes: its pid."""
    job = clip_job(server.url("/long.mp3"), server.url("/media/cover-1.jpeg"))
    task = asyncio.create_task(proc.process(job, Steps()))
    return job, task, await encoding_pid(proc, job.job_id, task)


@pytest.mark.parametrize(("path", "code", "options"), CASES)
async def test_failure_has_its_code_and_leaves_nothing(
    server: MediaServer,
    session: aiohttp.ClientSession,
    media_dir: Path,
    path: str,
    code: str,
    options: dict[str, Any],
) -> None:
    """Bad audio, 404, 5xx, empty, redirects, timeouts, size and type: its code, no file."""
    job = clip_job(server.url(path), server.url("/media/cover-1.jpeg"))
    steps = Steps()
    error = await _failure(processor(session, media_dir, **options), job, steps)

    assert error.code == code, str(error)
    assert listing(media_dir) == []
    assert steps.seen[0] is ClipStep.DOWNLOADING
    # A signed CDN link's query never reaches an error message, nor does the media path.
    assert str(media_dir) not in str(error)


async def test_corrupt_audio_reports_ffmpegs_last_line(
    server: MediaServer, session: aiohttp.ClientSession, media_dir: Path
) -> None:
    """CLIP_RENDER_FAILED carries ffmpeg's exit code and its last stderr line, without paths."""
    error = await _failure(processor(session, media_dir), clip_job(server.url("/corrupt.mp3")))

    message = str(error)
    assert message.startswith("ffmpeg exited with 1: ")
    assert "audio.mp3" in message
    assert "/" not in message.partition(": ")[2]


async def test_audio_that_is_a_playlist_reads_nothing_else(
    server: MediaServer, session: aiohttp.ClientSession, media_dir: Path
) -> None:
    """An HLS playlist posing as MP3 is refused by ffmpeg: no local file read, no URL fetched."""
    error = await _failure(processor(session, media_dir), clip_job(server.url("/playlist.mp3")))

    # Without the demuxer whitelist ffmpeg renders the local file into the clip.
    assert error.code == ClipErrorCode.CLIP_RENDER_FAILED
    assert server.hits["127.0.0.1/media/track-2.mp3"] == 0
    assert listing(media_dir) == []


async def test_5xx_is_retried_then_fails(
    server: MediaServer, session: aiohttp.ClientSession, media_dir: Path
) -> None:
    """A 500 is asked again up to download_attempts times, a 404 only once."""
    proc = processor(session, media_dir, download_attempts=3)
    for path in ("/broken.mp3", "/missing.mp3"):
        await _failure(proc, clip_job(server.url(path)))
    assert server.hits["127.0.0.1/broken.mp3"] == 3
    assert server.hits["127.0.0.1/missing.mp3"] == 1


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://127.0.0.1/track.mp3",
        "http://localhost:{port}/media/track-1.mp3",
        "http://127.0.0.1.evil.example:{port}/media/track-1.mp3",
        "https://user:pw@evil.example/x.mp3?sig=secret",
        "//127.0.0.1/x.mp3",
        "http://127.0.0.1:99999/x.mp3",
        "http://[::1/x.mp3",
        "http:///x.mp3",
    ],
)
async def test_only_http_to_allowed_hosts(
    server: MediaServer, session: aiohttp.ClientSession, media_dir: Path, url: str
) -> None:
    """file://, ftp://, other hosts, look-alike hosts and malformed URLs are refused unfetched."""
    error = await _failure(processor(session, media_dir), clip_job(url.format(port=server.port)))

    assert error.code == ClipErrorCode.CLIP_HOST_NOT_ALLOWED
    assert sum(server.hits.values()) == 0
    assert "secret" not in str(error) and "pw" not in str(error)
    assert listing(media_dir) == []


async def test_redirect_to_another_host_is_not_followed(
    server: MediaServer, session: aiohttp.ClientSession, media_dir: Path
) -> None:
    """A redirect naming a host outside the allowed ones is refused before it is requested."""
    error = await _failure(processor(session, media_dir), clip_job(server.url("/away.mp3")))

    assert error.code == ClipErrorCode.CLIP_HOST_NOT_ALLOWED
    assert "localhost" in str(error)
    assert server.hits["127.0.0.1/away.mp3"] == 1
    assert server.hits["localhost/media/track-1.mp3"] == 0


async def test_wildcard_host_allows_subdomains_only(
    server: MediaServer, session: aiohttp.ClientSession, media_dir: Path
) -> None:
    """``*.example.org`` allows cdn.example.org but not example.org nor badexample.org."""
    proc = processor(session, media_dir, allowed_hosts=["*.example.org"])
    proc.policy.check("https://cdn.example.org/a.mp3")
    for url in ("https://example.org/a.mp3", "https://badexample.org/a.mp3"):
        with pytest.raises(PostProcessError) as info:
            proc.policy.check(url)
        assert info.value.code == ClipErrorCode.CLIP_HOST_NOT_ALLOWED


async def test_job_without_audio_fails_with_no_audio(
    session: aiohttp.ClientSession, media_dir: Path
) -> None:
    """A job whose tracks carry no audio URL fails with CLIP_NO_AUDIO and reports no step."""
    steps = Steps()
    for job in (clip_job(tracks=False), clip_job("")):
        error = await _failure(processor(session, media_dir), job, steps)
        assert error.code == ClipErrorCode.CLIP_NO_AUDIO
    assert steps.seen == []


async def test_ffmpeg_killed_mid_render(
    server: MediaServer, session: aiohttp.ClientSession, media_dir: Path
) -> None:
    """ffmpeg killed with SIGKILL while encoding → CLIP_RENDER_KILLED, and no partial file."""
    proc = processor(session, media_dir, **SLOW)
    job, task, pid = await _encoding(proc, server)

    os.kill(pid, signal.SIGKILL)
    with pytest.raises(PostProcessError) as info:
        await task

    assert info.value.code == ClipErrorCode.CLIP_RENDER_KILLED
    assert "SIGKILL" in str(info.value)
    assert listing(media_dir) == []
    assert gone(pid)
    assert proc.ffmpeg_pid(job.job_id) is None


async def test_cancelled_mid_render_kills_ffmpeg_and_cleans_up(
    server: MediaServer, session: aiohttp.ClientSession, media_dir: Path
) -> None:
    """Cancelling process() (as the service's timeout does) kills and reaps ffmpeg, cleans up."""
    _, task, pid = await _encoding(processor(session, media_dir, **SLOW), server)
    assert any(name.startswith(".work-") for name in listing(media_dir))

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert gone(pid)
    assert ffmpeg_children() == []
    assert listing(media_dir) == []


async def test_cancelled_mid_download_cleans_up(
    server: MediaServer, session: aiohttp.ClientSession, media_dir: Path
) -> None:
    """Cancelling while the download hangs leaves no work directory."""
    job = clip_job(server.url("/slow.mp3"))
    task = asyncio.create_task(processor(session, media_dir).process(job, Steps()))
    for _ in range(500):
        if server.hits["127.0.0.1/slow.mp3"]:
            break
        await asyncio.sleep(0.01)
    assert listing(media_dir)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert listing(media_dir) == []


async def test_own_render_timeout_kills_ffmpeg(
    server: MediaServer, session: aiohttp.ClientSession, media_dir: Path
) -> None:
    """An ffmpeg run longer than render_timeout_s is killed: CLIP_RENDER_TIMEOUT, nothing left."""
    proc = processor(session, media_dir, render_timeout_s=1.0, **SLOW)
    error = await _failure(proc, clip_job(server.url("/long.mp3")))

    assert error.code == ClipErrorCode.CLIP_RENDER_TIMEOUT
    assert ffmpeg_children() == []
    assert listing(media_dir) == []


async def test_leftovers_of_a_killed_process_are_swept(
    server: MediaServer, session: aiohttp.ClientSession, media_dir: Path
) -> None:
    """A work directory older than any render can run (a kill -9) goes with the next render."""
    leftover = media_dir / ".work-job_1_dead-abc"
    leftover.mkdir(parents=True)
    (leftover / "clip.mp4").write_bytes(b"half")
    os.utime(leftover, (0, 0))
    fresh = media_dir / ".work-job_2_live-def"
    fresh.mkdir()

    job = clip_job(server.url("/media/track-2.mp3"))
    await processor(session, media_dir).process(job, Steps())

    assert listing(media_dir) == sorted([".work-job_2_live-def", f"{job.job_id}.mp4"])
