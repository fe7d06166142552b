"""``FfmpegPostProcessor``: the core's ``PostProcessor`` port with aiohttp and ffmpeg.

Each render works in its own directory inside ``media_dir`` (hidden, with a
random name): the downloads, the composed frame and the MP4 being written.
Only a finished, fsynced MP4 is moved to ``media_dir/<job_id>.mp4`` with
``os.replace`` — one rename within one filesystem — so the server never
serves half a file; the work directory goes on every way out, cancellation
included. A process killed with -9 cannot clean up: its work directory is
swept by a later render once it is older than any render may run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Final
from urllib.parse import urlsplit

import aiohttp

from clipjobs.errors import ConfigError, PostProcessError
from clipjobs.events import ClipStep, Track
from clipjobs.ports import StepReporter
from clipjobs.state import JobState

from ._codes import ClipErrorCode
from ._fetch import Fetcher, Kind, UrlPolicy
from ._ffmpeg import FfmpegRun, compose_args, encode_args
from ._fsio import off_loop

__all__ = ["DEFAULT_PUBLIC_PREFIX", "FfmpegPostProcessor"]

DEFAULT_PUBLIC_PREFIX: Final = "/media"
MiB: Final = 1024 * 1024

_log = logging.getLogger("clipjobs.pipeline.ffmpeg")
# Job ids become file names: nothing that could climb out of media_dir.
_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
_SUFFIX = re.compile(r"^\.[a-z0-9]{1,5}$")
_COLOR = re.compile(r"^(0x[0-9A-Fa-f]{6}|[A-Za-z]{3,20})$")
_PRESETS = frozenset(
    {"ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower"}
)
_WORK_PREFIX = ".work-"
_IMAGE_SUFFIX = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp"}


class FfmpegPostProcessor:
    """Downloads a job's first track and cover, renders a 1080×1920 H.264/AAC MP4, returns its URL.

    ``session`` is the caller's (opened and closed by it). ``allowed_hosts``
    are the only hosts media is fetched from (redirects included): the Suno
    base URL's host plus ``CLIPJOBS_CLIP_HOSTS``; ``*.example.com`` allows
    subdomains. The clip's URL is ``{public_prefix}/{job_id}.mp4``: the HTTP
    server must serve ``media_dir`` under ``public_prefix``.

    ``render_timeout_s`` bounds each ffmpeg run (CLIP_RENDER_TIMEOUT); the
    service's own timeout bounds the whole step and cancels it, which kills
    ffmpeg and removes every temporary file. ``max_parallel`` renders run at
    once in this process (each ffmpeg uses every core); the rest wait.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        media_dir: Path,
        *,
        allowed_hosts: Sequence[str],
        public_prefix: str = DEFAULT_PUBLIC_PREFIX,
        max_bytes: int = 50 * MiB,
        clip_max_s: float = 60.0,
        ffmpeg: str = "ffmpeg",
        download_timeout_s: float = 60.0,
        render_timeout_s: float = 240.0,
        fps: float = 25.0,
        preset: str = "veryfast",
        background: str = "0x1d1b26",
        audio_kbps: int = 192,
        download_attempts: int = 3,
        retry_backoff_s: float = 0.5,
        max_parallel: int = 2,
    ) -> None:
        if clip_max_s <= 0 or max_bytes <= 0 or fps <= 0 or audio_kbps <= 0:
            raise ConfigError("clip_max_s, max_bytes, fps and audio_kbps must be positive")
        if download_timeout_s <= 0 or render_timeout_s <= 0 or max_parallel < 1:
            raise ConfigError("post-processing timeouts and max_parallel must be positive")
        if preset not in _PRESETS:
            raise ConfigError(f"x264 preset {preset!r} is not one of {sorted(_PRESETS)}")
        if not _COLOR.match(background):
            raise ConfigError(f"background {background!r} must be 0xRRGGBB or a color name")
        self.media_dir = Path(media_dir)
        self.public_prefix = public_prefix.rstrip("/")
        self.policy = UrlPolicy(allowed_hosts)
        self.clip_max_s = clip_max_s
        self.ffmpeg = ffmpeg
        self.download_timeout_s = download_timeout_s
        self.render_timeout_s = render_timeout_s
        self.fps = fps
        self.preset = preset
        self.background = background
        self.audio_kbps = audio_kbps
        self._fetcher = Fetcher(
            session,
            self.policy,
            max_bytes=max_bytes,
            timeout_s=download_timeout_s,
            attempts=download_attempts,
            retry_backoff_s=retry_backoff_s,
        )
        self._slots = asyncio.Semaphore(max_parallel)
        self._pids: dict[str, int] = {}
        # No render of this process lives longer; older work directories are leftovers.
        self._stale_after_s = 2 * (
            download_attempts * download_timeout_s * 2 + 3 * render_timeout_s + 60
        )

    def __repr__(self) -> str:
        return f"FfmpegPostProcessor(media_dir={str(self.media_dir)!r}, {self.policy!r})"

    @property
    def max_bytes(self) -> int:
        return self._fetcher.max_bytes

    def clip_path(self, job_id: str) -> Path:
        return self.media_dir / f"{_checked(job_id)}.mp4"

    def clip_url(self, job_id: str) -> str:
        return f"{self.public_prefix}/{_checked(job_id)}.mp4"

    def ffmpeg_pid(self, job_id: str) -> int | None:
        """The pid of the ffmpeg now rendering this job, if one is (for diagnosis)."""
        return self._pids.get(job_id)

    # --- the port --------------------------------------------------------------

    async def process(self, job: JobState, report: StepReporter) -> str:
        job_id = job.job_id
        final = self.clip_path(job_id)
        url = self.clip_url(job_id)
        if await off_loop(final.is_file):
            # A crash after the rename but before ClipReady was recorded: it is done.
            _log.info("[%s] clip already rendered: %s", job_id, url, extra=_extra(job))
            return url
        track = next((t for t in job.tracks if t.audio_url), None)
        if track is None:
            raise PostProcessError(
                ClipErrorCode.CLIP_NO_AUDIO.value, "the job has no track with an audio URL"
            )
        await off_loop(lambda: self.media_dir.mkdir(parents=True, exist_ok=True))
        await off_loop(self._sweep_leftovers)
        work = Path(
            await off_loop(
                lambda: tempfile.mkdtemp(prefix=f"{_WORK_PREFIX}{job_id}-", dir=self.media_dir)
            )
        )
        started = time.monotonic()
        try:
            await report(ClipStep.DOWNLOADING)
            audio, cover = await self._download(job, track, work)
            await report(ClipStep.RENDERING)
            async with self._slots:
                await self._compose(job, cover, work)
                await self._encode(job, audio, work)
            await off_loop(lambda: _publish(work / "clip.mp4", final))
        finally:
            # Synchronous on purpose: it must finish even while we are being cancelled.
            shutil.rmtree(work, ignore_errors=True)
        _log.info(
            "[%s] clip rendered in %.1f s: %s",
            job_id,
            time.monotonic() - started,
            url,
            extra=_extra(job),
        )
        return url

    # --- steps -----------------------------------------------------------------

    async def _download(self, job: JobState, track: Track, work: Path) -> tuple[str, str | None]:
        audio = "audio" + _suffix(track.audio_url)
        await self._fetcher.fetch(track.audio_url, work / audio, Kind.AUDIO, log_extra=_extra(job))
        if not track.image_url:
            return audio, None
        try:
            got = await self._fetcher.fetch(
                track.image_url, work / "cover", Kind.IMAGE, log_extra=_extra(job)
            )
        except PostProcessError as exc:
            # The cover is decoration: a clip over a plain background beats no clip.
            _log.warning(
                "[%s] cover not used (%s: %s); rendering over a solid color",
                job.job_id,
                exc.code,
                exc,
                extra=_extra(job),
            )
            return audio, None
        cover = "cover" + _IMAGE_SUFFIX.get(got.content_type, "")
        if cover != "cover":
            await off_loop(lambda: (work / "cover").rename(work / cover))
        return audio, cover

    async def _compose(self, job: JobState, cover: str | None, work: Path) -> None:
        if cover is not None:
            try:
                await self._run(job, compose_args(cover, self.background), work)
            except PostProcessError as exc:
                if exc.code != ClipErrorCode.CLIP_RENDER_FAILED.value:
                    raise
                _log.warning(
                    "[%s] cover unreadable (%s); rendering over a solid color",
                    job.job_id,
                    exc,
                    extra=_extra(job),
                )
            else:
                return
        await self._run(job, compose_args(None, self.background), work)

    async def _encode(self, job: JobState, audio: str, work: Path) -> None:
        args = encode_args(
            audio,
            "clip.mp4",
            clip_max_s=self.clip_max_s,
            fps=self.fps,
            preset=self.preset,
            audio_kbps=self.audio_kbps,
        )
        await self._run(job, args, work)

    async def _run(self, job: JobState, args: list[str], work: Path) -> None:
        job_id = job.job_id

        def started(pid: int) -> None:
            self._pids[job_id] = pid

        try:
            await FfmpegRun(
                self.ffmpeg, args, work, timeout_s=self.render_timeout_s, on_start=started
            ).run()
        finally:
            self._pids.pop(job_id, None)

    def _sweep_leftovers(self) -> None:
        cutoff = time.time() - self._stale_after_s
        for entry in self.media_dir.glob(f"{_WORK_PREFIX}*"):
            with contextlib.suppress(OSError):
                if entry.is_dir() and entry.stat().st_mtime < cutoff:
                    _log.info("removing a killed render's leftovers: %s", entry.name)
                    shutil.rmtree(entry, ignore_errors=True)


def _publish(rendered: Path, final: Path) -> None:
    """fsync the rendered file, rename it into place, fsync the directory."""
    if rendered.stat().st_size == 0:
        raise PostProcessError(
            ClipErrorCode.CLIP_RENDER_FAILED.value, "ffmpeg exited 0 but wrote nothing"
        )
    fd = os.open(rendered, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(rendered, final)
    # The rename is durable only once the directory entry is on disk.
    fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _suffix(url: str) -> str:
    """The URL's file extension when it is a plain one (a hint for ffmpeg), else nothing."""
    try:
        suffix = PurePosixPath(urlsplit(url).path).suffix.lower()
    except ValueError:  # the fetcher refuses the URL with the right code
        return ""
    return suffix if _SUFFIX.match(suffix) else ""


def _checked(job_id: str) -> str:
    if not _JOB_ID.match(job_id):
        raise PostProcessError(
            ClipErrorCode.CLIP_RENDER_FAILED.value, f"job id {job_id!r} cannot name a file"
        )
    return job_id


def _extra(job: JobState) -> dict[str, str]:
    return {"job_id": job.job_id, "stage": job.stage.value, "request_id": job.request_id}
