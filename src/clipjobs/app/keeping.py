"""Keeping what was made (SPEC 10.4): the step that copies a succeeded job's files.

Suno's file URLs expire after about two weeks. After success, each track's
audio and cover are copied into media storage by a :class:`MediaKeeper`
(the adapter: ``clipjobs_ffmpeg.FileMediaKeeper``), one ``MediaStored`` per
file. A failure is recorded (``MediaCopyFailed``) and tried again after a
growing wait; a refusal (host not allowed, too large, not audio) or too many
failures gives the file up. Neither changes the job's stage: a success stays
a success, with ``mediaError`` beside it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Protocol

from attrs import field, frozen, validators

from ..domain.commands import Command, FailMediaCopy, KeepMedia
from ..domain.errors import PostProcessError
from ..domain.events import MediaKind

if TYPE_CHECKING:
    from ..domain.state import JobState
    from .service import JobService

__all__ = [
    "KEPT_SUFFIXES",
    "PERMANENT_CODES",
    "KeepConfig",
    "KeptFile",
    "MediaKeeper",
    "keep_media",
    "kept_name",
]

#: Failures another attempt cannot mend: the file is given up at once.
PERMANENT_CODES = frozenset({"CLIP_HOST_NOT_ALLOWED", "CLIP_BAD_CONTENT_TYPE", "CLIP_TOO_LARGE"})


#: The file name suffix of each content type kept; any other is stored as ``.bin``.
KEPT_SUFFIXES = {
    "audio/mpeg": ".mp3",
    "audio/mp3": ".mp3",
    "audio/mp4": ".m4a",
    "audio/x-m4a": ".m4a",
    "audio/aac": ".aac",
    "audio/wav": ".wav",
    "audio/x-wav": ".wav",
    "audio/ogg": ".ogg",
    "audio/flac": ".flac",
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/webp": ".webp",
    "image/gif": ".gif",
}


def kept_name(sha256: str, content_type: str) -> str:
    """A kept file's name in media storage: its content hash and its type's suffix."""
    return sha256 + KEPT_SUFFIXES.get(content_type, ".bin")


@frozen
class KeptFile:
    """A file in media storage: its content hash, size and content type."""

    sha256: str
    bytes: int
    content_type: str


class MediaKeeper(Protocol):
    """Copies a URL into content-addressed media storage."""

    async def keep(self, url: str, kind: MediaKind, *, job_id: str) -> KeptFile:
        """Copy ``url`` (audio or a cover) into storage and describe the copy.

        Raise :class:`~clipjobs.domain.errors.PostProcessError` (with its ``code``) when
        it cannot be had; nothing partial is ever visible in storage.
        """
        ...


@frozen
class KeepConfig:
    """How failed copies are retried: ``backoff_s`` doubling up to ``backoff_max_s``."""

    backoff_s: float = field(default=5.0, validator=validators.gt(0))
    backoff_max_s: float = field(default=3600.0, validator=validators.gt(0))
    #: Failures in a row after which a file is given up.
    max_attempts: int = field(default=12, validator=validators.ge(1))

    def wait(self, attempt: int) -> timedelta:
        """The wait after the ``attempt``-th failure in a row."""
        return timedelta(seconds=min(self.backoff_max_s, self.backoff_s * 2 ** (attempt - 1)))


async def keep_media(
    service: JobService, keeper: MediaKeeper, config: KeepConfig, job_id: str
) -> JobState:
    """Copy the job's files still to keep, in order; stop at the first failure to retry."""
    state = await service.load(job_id)
    for track_id, kind, url in state.media_pending:
        try:
            kept = await keeper.keep(url, kind, job_id=job_id)
        except PostProcessError as exc:
            attempt = state.media_attempts + 1
            give_up = exc.code in PERMANENT_CODES or attempt >= config.max_attempts
            retry_at = None if give_up else service.clock.now() + config.wait(attempt)
            failed = partial(FailMediaCopy, track_id, kind, exc.code, str(exc), retry_at=retry_at)
            state, _ = await service.execute(job_id, _at(failed))
            if give_up:
                continue
            return state
        stored = partial(KeepMedia, track_id, kind, kept.sha256, kept.bytes, kept.content_type)
        state, _ = await service.execute(job_id, _at(stored))
    return state


def _at(make: Callable[..., Command]) -> Callable[[datetime], Command]:
    """The command ``make`` builds, stamped when the service decides it."""
    return lambda at: make(at=at)
