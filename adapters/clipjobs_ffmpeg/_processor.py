"""``FfmpegPostProcessor``: the core's ``PostProcessor`` port with aiohttp and ffmpeg.

Each render works in its own directory inside ``media_dir`` (hidden, with a
random name): the downloads, the captions, the composed pictures and the MP4
being written. Only finished, fsynced files are moved to ``media_dir`` with
``os.replace`` — one rename within one filesystem — the captions first and
the MP4 last, so the server never serves half a file and an MP4 in place
means everything is; the work directory goes on every way out, cancellation
included. A process killed with -9 cannot clean up: its work directory is
swept by a later render once it is older than any render may run.

The lyrics come from Suno while the media download; whatever goes wrong
with them (an error, a timeout, an answer that makes no captions) leaves the
clip without captions and says why in ``RenderedClip.note``, never fails it.
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
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Final
from urllib.parse import urlsplit

import aiohttp
from attrs import frozen

from clipjobs.app.keeping import kept_name
from clipjobs.app.ports import RenderedClip, StepReporter, SunoClient
from clipjobs.domain.errors import ConfigError, PostProcessError, SunoError
from clipjobs.domain.events import AlignedWord, ClipStep, MediaKind, TimestampedLyrics, Track
from clipjobs.domain.state import JobState

from ._captions import MAX_WORDS, Measure, caption_lines, karaoke_ass, srt, title_ass
from ._codes import CaptionsNote, ClipErrorCode
from ._fetch import Downloaded, Fetcher, Kind, UrlPolicy
from ._ffmpeg import (
    BOLD_FONT,
    FfmpegRun,
    compose_args,
    compose_full_args,
    encode_args,
    encode_full_args,
    find_fonts,
)
from ._fontmetrics import FontMetrics
from ._fsio import off_loop
from ._keep import KEPT_DIR

__all__ = ["DEFAULT_PUBLIC_PREFIX", "STYLES", "FfmpegPostProcessor"]

DEFAULT_PUBLIC_PREFIX: Final = "/media"
MiB: Final = 1024 * 1024
#: ``simple``: the cover over its blurred copy, still. ``full``: title, moving cover,
#: waveform and karaoke captions.
STYLES: Final = ("simple", "full")
#: The family libass asks fontconfig for; ``fonts_dir`` holds its files.
FONT_FAMILY: Final = "DejaVu Sans"

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


@frozen
class _Captions:
    """The captions of one clip, as written beside it, or why there are none."""

    ass: str | None = None
    srt: str | None = None
    note: str | None = None


class FfmpegPostProcessor:
    """Downloads a job's first track and cover, renders a 1080×1920 H.264/AAC MP4, returns its URL.

    ``session`` is the caller's (opened and closed by it). ``allowed_hosts``
    are the only hosts media is fetched from (redirects included): the Suno
    base URL's host plus ``CLIPJOBS_CLIP_HOSTS``; ``*.example.com`` allows
    subdomains. The clip's URL is ``{public_prefix}/{job_id}.mp4``: the HTTP
    server must serve ``media_dir`` under ``public_prefix``.

    ``style`` is ``full`` (title, slowly zooming cover, waveform, karaoke
    captions; it needs the DejaVu fonts, found in ``fonts_dir`` or Debian's
    place) or ``simple`` (the cover, still). With ``captions`` and a ``suno``
    client, the track's timestamped lyrics become ``<job_id>.ass`` and
    ``<job_id>.srt`` beside the clip (burned in with ``full``); the lyrics call
    may take ``lyrics_timeout_s``, and its failures only leave the captions
    out. ``channel_names`` maps channel ids to the name shown above the title.

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
        style: str = "full",
        captions: bool = True,
        suno: SunoClient | None = None,
        channel_names: Mapping[str, str] | None = None,
        fonts_dir: Path | None = None,
        lyrics_timeout_s: float = 30.0,
    ) -> None:
        if clip_max_s <= 0 or max_bytes <= 0 or fps <= 0 or audio_kbps <= 0:
            raise ConfigError("clip_max_s, max_bytes, fps and audio_kbps must be positive")
        if download_timeout_s <= 0 or render_timeout_s <= 0 or max_parallel < 1:
            raise ConfigError("post-processing timeouts and max_parallel must be positive")
        if preset not in _PRESETS:
            raise ConfigError(f"x264 preset {preset!r} is not one of {sorted(_PRESETS)}")
        if not _COLOR.match(background):
            raise ConfigError(f"background {background!r} must be 0xRRGGBB or a color name")
        if style not in STYLES:
            raise ConfigError(f"clip style {style!r} must be one of {', '.join(STYLES)}")
        if lyrics_timeout_s <= 0:
            raise ConfigError("lyrics_timeout_s must be positive")
        self.style = style
        self.captions = captions
        self.suno = suno
        self.channel_names = dict(channel_names or {})
        self.lyrics_timeout_s = lyrics_timeout_s
        if style == "full":
            self.fonts_dir: Path | None = find_fonts(fonts_dir)
        else:
            # ``simple`` draws no text; the fonts only measure the kept captions' lines.
            try:
                self.fonts_dir = find_fonts(fonts_dir)
            except ConfigError:
                self.fonts_dir = None
        # Captions are measured in the bold face libass draws them with.
        self._measure: Measure | None = None
        if self.fonts_dir is not None:
            try:
                self._measure = FontMetrics.load(self.fonts_dir / BOLD_FONT).width_em
            except (OSError, ValueError) as exc:
                raise ConfigError(f"cannot read {self.fonts_dir / BOLD_FONT}: {exc}") from None
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
        return (
            f"FfmpegPostProcessor(media_dir={str(self.media_dir)!r}, {self.policy!r},"
            f" style={self.style!r}, captions={self.captions and self.suno is not None})"
        )

    @property
    def max_bytes(self) -> int:
        return self._fetcher.max_bytes

    def clip_path(self, job_id: str) -> Path:
        return self.media_dir / f"{_checked(job_id)}.mp4"

    def clip_url(self, job_id: str) -> str:
        return f"{self.public_prefix}/{_checked(job_id)}.mp4"

    def captions_path(self, job_id: str, suffix: str = ".srt") -> Path:
        """Where the job's captions are kept: ``.srt``, and ``.ass`` beside it."""
        return self.media_dir / f"{_checked(job_id)}{suffix}"

    def captions_url(self, job_id: str) -> str:
        return f"{self.public_prefix}/{_checked(job_id)}.srt"

    def ffmpeg_pid(self, job_id: str) -> int | None:
        """The pid of the ffmpeg now rendering this job, if one is (for diagnosis)."""
        return self._pids.get(job_id)

    # --- the port --------------------------------------------------------------

    async def process(self, job: JobState, report: StepReporter) -> RenderedClip:
        job_id = job.job_id
        final = self.clip_path(job_id)
        url = self.clip_url(job_id)
        if await off_loop(final.is_file):
            # A crash after the rename but before ClipReady was recorded: it is done
            # (the captions, if any, were moved into place before the clip).
            _log.info("[%s] clip already rendered: %s", job_id, url, extra=_extra(job))
            kept = await off_loop(self.captions_path(job_id).is_file)
            return RenderedClip(url, self.captions_url(job_id) if kept else None)
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
        length = min(self.clip_max_s, track.duration or self.clip_max_s)
        try:
            await report(ClipStep.DOWNLOADING)
            lyrics = self._ask_lyrics(job, track)
            try:
                audio, cover = await self._download(job, track, work)
                captions = await self._captions(job, lyrics, length)
            finally:
                if lyrics is not None and not lyrics.done():
                    lyrics.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await lyrics
            await off_loop(lambda: self._write_texts(job, track, captions, work))
            await report(ClipStep.RENDERING)
            async with self._slots:
                used_cover = await self._compose(job, cover, work)
                await self._encode(
                    job, audio, work, cover=used_cover, captions=captions, length=length
                )
            await off_loop(lambda: self._publish_all(job_id, captions, work))
        finally:
            # Synchronous on purpose: it must finish even while we are being cancelled.
            shutil.rmtree(work, ignore_errors=True)
        _log.info(
            "[%s] clip rendered in %.1f s (%s, %s): %s",
            job_id,
            time.monotonic() - started,
            self.style,
            "captions" if captions.srt is not None else "no captions",
            url,
            extra=_extra(job),
        )
        if captions.note is not None:
            _log.warning("[%s] clip without captions: %s", job_id, captions.note, extra=_extra(job))
        captions_url = self.captions_url(job_id) if captions.srt is not None else None
        return RenderedClip(url, captions_url, captions.note)

    # --- captions --------------------------------------------------------------

    def _ask_lyrics(
        self, job: JobState, track: Track
    ) -> asyncio.Task[TimestampedLyrics | str] | None:
        """Start asking Suno for the track's lyrics, alongside the downloads (captions on)."""
        if not self.captions or self.suno is None:
            return None
        return asyncio.create_task(self._lyrics(self.suno, job, track))

    async def _lyrics(
        self, suno: SunoClient, job: JobState, track: Track
    ) -> TimestampedLyrics | str:
        """The track's lyrics, or the note saying why there are none."""
        failed = CaptionsNote.CAPTIONS_LYRICS_FAILED.value
        if job.task_id is None:
            return f"{failed}: the job has no Suno task id"
        try:
            async with asyncio.timeout(self.lyrics_timeout_s):
                return await suno.timestamped_lyrics(job.task_id, track.id)
        except TimeoutError:
            waited = f"{self.lyrics_timeout_s:g} s"
            return f"{failed}: Suno's timestamped lyrics did not come within {waited}"
        except SunoError as exc:
            return f"{failed}: {exc}"
        except Exception as exc:  # any client's bug costs the captions, not the clip
            _log.exception(
                "[%s] the timestamped-lyrics call crashed", job.job_id, extra=_extra(job)
            )
            return f"{failed}: {type(exc).__name__}"

    async def _captions(
        self, job: JobState, lyrics: asyncio.Task[TimestampedLyrics | str] | None, length: float
    ) -> _Captions:
        if lyrics is None:
            return _Captions()
        got = await lyrics
        if isinstance(got, str):
            return _Captions(note=got)
        words = got.aligned_words
        if len(words) > MAX_WORDS:
            return _Captions(
                note=f"{CaptionsNote.CAPTIONS_REFUSED.value}: Suno sent {len(words)} aligned words,"
                f" more than the {MAX_WORDS} a song can have"
            )
        try:
            # Thousands of words take a moment to sort, measure and write: off the event loop.
            return await asyncio.to_thread(self._typeset, words, length)
        except Exception as exc:  # a typesetting bug costs the captions, not the clip
            _log.exception("[%s] captions could not be made", job.job_id, extra=_extra(job))
            return _Captions(
                note=f"{CaptionsNote.CAPTIONS_REFUSED.value}: not typeset ({type(exc).__name__})"
            )

    def _typeset(self, words: Sequence[AlignedWord], length: float) -> _Captions:
        lines = caption_lines(words, length, self._measure)
        if not lines:
            what = "the song has no lyrics" if not words else "no word is sung within the clip"
            return _Captions(note=f"{CaptionsNote.CAPTIONS_NO_LYRICS.value}: {what}")
        ass = karaoke_ass(lines, length, FONT_FAMILY, self._measure)
        return _Captions(ass=ass, srt=srt(lines, length))

    def _write_texts(self, job: JobState, track: Track, captions: _Captions, work: Path) -> None:
        """The captions, and for ``full`` the title and the fonts, into the work directory."""
        if captions.ass is not None and captions.srt is not None:
            (work / "captions.ass").write_text(captions.ass, encoding="utf-8")
            (work / "captions.srt").write_text(captions.srt, encoding="utf-8")
        if self.style == "full" and self.fonts_dir is not None:
            title = track.title or job.params.title or ""
            channel = self.channel_names.get(job.channel_id)
            titles = title_ass(title, channel, FONT_FAMILY, self._measure)
            (work / "title.ass").write_text(titles, encoding="utf-8")
            # A link, so ffmpeg's filter arguments name no path that would need escaping.
            (work / "fonts").symlink_to(self.fonts_dir, target_is_directory=True)

    def _publish_all(self, job_id: str, captions: _Captions, work: Path) -> None:
        if captions.srt is not None:
            _publish(work / "captions.ass", self.captions_path(job_id, ".ass"))
            _publish(work / "captions.srt", self.captions_path(job_id, ".srt"))
        # Last: the clip in place means the captions are too (see process()).
        _publish(work / "clip.mp4", self.clip_path(job_id))

    # --- steps -----------------------------------------------------------------

    async def _from_kept(
        self, job: JobState, track: Track, kind: MediaKind, dest: Path
    ) -> str | None:
        """Take the kept copy of a track's file when there is one (not downloaded twice)."""
        kept = job.stored(track.id, kind)
        if kept is None:
            return None
        source = self.media_dir / KEPT_DIR / kept_name(kept.sha256, kept.content_type)
        try:
            await asyncio.to_thread(_link_or_copy, source, dest)
        except OSError as exc:  # pruned or lost meanwhile: download it as before
            _log.warning(
                "[%s] kept %s not used: %s", job.job_id, kind.value, exc, extra=_extra(job)
            )
            return None
        return kept.content_type

    async def _download(self, job: JobState, track: Track, work: Path) -> tuple[str, str | None]:
        audio = "audio" + _suffix(track.audio_url)
        if await self._from_kept(job, track, MediaKind.AUDIO, work / audio) is None:
            await self._fetcher.fetch(
                track.audio_url, work / audio, Kind.AUDIO, log_extra=_extra(job)
            )
        if not track.image_url:
            return audio, None
        try:
            kept_type = await self._from_kept(job, track, MediaKind.IMAGE, work / "cover")
            got = (
                Downloaded(0, kept_type)
                if kept_type is not None
                else await self._fetcher.fetch(
                    track.image_url, work / "cover", Kind.IMAGE, log_extra=_extra(job)
                )
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

    async def _compose(self, job: JobState, cover: str | None, work: Path) -> bool:
        """Compose the still pictures; whether the cover is in them."""
        compose = compose_full_args if self.style == "full" else compose_args
        if cover is not None:
            try:
                await self._run(job, compose(cover, self.background), work)
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
                return True
        await self._run(job, compose(None, self.background), work)
        return False

    async def _encode(
        self,
        job: JobState,
        audio: str,
        work: Path,
        *,
        cover: bool,
        captions: _Captions,
        length: float,
    ) -> None:
        if self.style == "full":
            args = encode_full_args(
                audio,
                "clip.mp4",
                cover=cover,
                captions=captions.ass is not None,
                zoom_s=length,
                clip_max_s=self.clip_max_s,
                fps=self.fps,
                preset=self.preset,
                audio_kbps=self.audio_kbps,
            )
        else:
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


def _link_or_copy(source: Path, dest: Path) -> None:
    try:
        os.link(source, dest)
    except OSError:
        shutil.copyfile(source, dest)


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
