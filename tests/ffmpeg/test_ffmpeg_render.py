"""FfmpegPostProcessor renders real media into a 1080×1920 H.264/AAC MP4, atomically."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import attrs
import pytest
from _ffmpeg_harness import (
    ASYNC_WITH_FFMPEG,
    BACKGROUND,
    FPS,
    MediaServer,
    Steps,
    clip_job,
    first_frame_rgb,
    listing,
    processor,
    streams,
)

from clipjobs import ClipStep, Track

pytestmark = ASYNC_WITH_FFMPEG


def _near(color: tuple[int, int, int], expected: tuple[int, int, int]) -> bool:
    return all(abs(a - b) <= 6 for a, b in zip(color, expected, strict=True))


@pytest.mark.parametrize("style", ["simple", "full"])
async def test_renders_vertical_h264_aac_clip_cut_to_clip_max(
    server: MediaServer, session: aiohttp.ClientSession, media_dir: Path, style: str
) -> None:
    """A 4 s song with its cover becomes a 1080×1920 H.264/yuv420p + AAC MP4 cut to clip_max_s."""
    job = clip_job(server.url("/media/track-1.mp3"), server.url("/media/cover-1.jpeg"))
    steps = Steps()
    made = await processor(session, media_dir, clip_max_s=2.0, style=style).process(job, steps)

    assert made.url == f"/media/{job.job_id}.mp4"
    assert steps.seen == [ClipStep.DOWNLOADING, ClipStep.RENDERING]
    assert listing(media_dir) == [f"{job.job_id}.mp4"]
    clip = media_dir / f"{job.job_id}.mp4"
    video, audio, duration = streams(clip)
    assert (video["codec_name"], video["width"], video["height"]) == ("h264", 1080, 1920)
    assert video["pix_fmt"] == "yuv420p"
    assert audio["codec_name"] == "aac"
    assert abs(float(audio["duration"]) - 2.0) <= 0.2
    # ffmpeg may end the still picture up to one frame after the audio.
    assert abs(duration - 2.0) <= 0.2 + 1 / FPS
    assert clip.read_bytes()[4:8] == b"ftyp"
    # +faststart: the index (moov) comes before the media data (mdat).
    head = clip.read_bytes()
    assert head.index(b"moov") < head.index(b"mdat")
    assert not _near(first_frame_rgb(clip), BACKGROUND), "the cover is not in the picture"


async def test_shorter_song_sets_the_length(
    server: MediaServer, session: aiohttp.ClientSession, media_dir: Path
) -> None:
    """A 3 s song under a 10 s clip_max_s makes a 3 s clip (the audio's own length)."""
    job = clip_job(server.url("/media/track-2.mp3"), server.url("/media/cover-2.jpeg"))
    await processor(session, media_dir, clip_max_s=10.0).process(job, Steps())

    video, audio, duration = streams(media_dir / f"{job.job_id}.mp4")
    assert (video["width"], video["height"]) == (1080, 1920)
    assert abs(float(audio["duration"]) - 3.06) <= 0.2
    assert abs(duration - 3.06) <= 0.2 + 1 / FPS


@pytest.mark.parametrize("style", ["simple", "full"])
async def test_no_cover_renders_over_the_solid_color(
    server: MediaServer, session: aiohttp.ClientSession, media_dir: Path, style: str
) -> None:
    """A track without an image URL is rendered over the background color, full size."""
    job = clip_job(server.url("/octet.mp3"))
    steps = Steps()
    await processor(session, media_dir, style=style).process(job, steps)

    clip = media_dir / f"{job.job_id}.mp4"
    video, _audio, _ = streams(clip)
    assert (video["width"], video["height"]) == (1080, 1920)
    assert _near(first_frame_rgb(clip), BACKGROUND)
    assert steps.seen == [ClipStep.DOWNLOADING, ClipStep.RENDERING]


@pytest.mark.parametrize("cover", ["/page.jpeg", "/garbage.jpeg", "/missing.mp3"])
async def test_unusable_cover_falls_back_to_the_solid_color(
    server: MediaServer, session: aiohttp.ClientSession, media_dir: Path, cover: str
) -> None:
    """A cover that is HTML, not a decodable image, or 404 still gives a clip, over the color."""
    job = clip_job(server.url("/media/track-2.mp3"), server.url(cover))
    await processor(session, media_dir).process(job, Steps())

    assert listing(media_dir) == [f"{job.job_id}.mp4"]
    assert _near(first_frame_rgb(media_dir / f"{job.job_id}.mp4"), BACKGROUND)


async def test_cover_from_a_disallowed_host_is_never_fetched(
    server: MediaServer, session: aiohttp.ClientSession, media_dir: Path
) -> None:
    """An image URL on another host is not requested; the clip is made over the color."""
    job = clip_job(server.url("/media/track-2.mp3"), server.url("/media/cover-1.jpeg", "localhost"))
    await processor(session, media_dir).process(job, Steps())

    assert server.hits["localhost/media/cover-1.jpeg"] == 0
    assert _near(first_frame_rgb(media_dir / f"{job.job_id}.mp4"), BACKGROUND)


async def test_rerun_after_a_crash_past_the_rename_returns_the_file(
    server: MediaServer, session: aiohttp.ClientSession, media_dir: Path
) -> None:
    """When the final file exists, process() returns its URL without downloading or rendering."""
    job = clip_job(server.url("/media/track-1.mp3"))
    media_dir.mkdir()
    (media_dir / f"{job.job_id}.mp4").write_bytes(b"rendered before the crash")
    steps = Steps()

    made = await processor(session, media_dir).process(job, steps)

    assert (made.url, made.captions_url) == (f"/media/{job.job_id}.mp4", None)
    assert steps.seen == []
    assert server.hits["127.0.0.1/media/track-1.mp3"] == 0
    assert (media_dir / f"{job.job_id}.mp4").read_bytes() == b"rendered before the crash"


async def test_same_host_redirect_and_503_retry_succeed(
    server: MediaServer, session: aiohttp.ClientSession, media_dir: Path
) -> None:
    """A redirect within an allowed host is followed, and one 503 is retried."""
    proc = processor(session, media_dir, public_prefix="/clips/")
    redirected = clip_job(server.url("/home.mp3"))
    flaky = clip_job(server.url("/flaky.mp3"))

    assert (await proc.process(redirected, Steps())).url == f"/clips/{redirected.job_id}.mp4"
    assert (await proc.process(flaky, Steps())).url == f"/clips/{flaky.job_id}.mp4"
    assert server.hits["127.0.0.1/media/track-2.mp3"] == 1
    assert server.hits["127.0.0.1/flaky.mp3"] == 2
    assert listing(media_dir) == sorted([f"{redirected.job_id}.mp4", f"{flaky.job_id}.mp4"])


async def test_first_track_with_audio_is_used(
    server: MediaServer, session: aiohttp.ClientSession, media_dir: Path
) -> None:
    """Tracks without an audio URL are skipped; the first one with audio is rendered."""
    job = clip_job(server.url("/media/track-2.mp3"))
    job = attrs.evolve(job, tracks=(Track("empty"), *job.tracks))
    await processor(session, media_dir, clip_max_s=10.0).process(job, Steps())

    _video, audio, _ = streams(media_dir / f"{job.job_id}.mp4")
    assert abs(float(audio["duration"]) - 3.06) <= 0.2
