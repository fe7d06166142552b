"""The ``errorCode``s post-processing records when a clip cannot be made; why captions are not."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["CaptionsNote", "ClipErrorCode"]


class ClipErrorCode(StrEnum):
    """``PostProcessError.code`` values; the service adds ``CLIP_RENDER_TIMEOUT`` for hangs."""

    #: The job has no track with an audio URL.
    CLIP_NO_AUDIO = "CLIP_NO_AUDIO"
    #: 404, 5xx after retries, network errors, a body cut short, a redirect loop.
    CLIP_DOWNLOAD_FAILED = "CLIP_DOWNLOAD_FAILED"
    #: Not http(s), or a host (or a redirect's host) outside the allowed ones.
    CLIP_HOST_NOT_ALLOWED = "CLIP_HOST_NOT_ALLOWED"
    #: The download is bigger than ``max_bytes`` (announced or counted while streaming).
    CLIP_TOO_LARGE = "CLIP_TOO_LARGE"
    #: The audio is not ``audio/*`` nor ``application/octet-stream``.
    CLIP_BAD_CONTENT_TYPE = "CLIP_BAD_CONTENT_TYPE"
    #: ffmpeg exited non-zero (a corrupt audio file), or the media directory is unwritable.
    CLIP_RENDER_FAILED = "CLIP_RENDER_FAILED"
    #: ffmpeg was killed by a signal (the OOM killer, an operator).
    CLIP_RENDER_KILLED = "CLIP_RENDER_KILLED"
    #: ffmpeg ran past the processor's own ``render_timeout_s`` (and was killed).
    CLIP_RENDER_TIMEOUT = "CLIP_RENDER_TIMEOUT"


class CaptionsNote(StrEnum):
    """Why a clip has no captions: the start of ``ClipReady.note``. The clip is made anyway."""

    #: The song has no sung words in the clip (an instrumental, or words only later).
    CAPTIONS_NO_LYRICS = "CAPTIONS_NO_LYRICS"
    #: Suno's timestamped-lyrics call failed or did not answer in time.
    CAPTIONS_LYRICS_FAILED = "CAPTIONS_LYRICS_FAILED"
    #: Suno's answer is not usable as captions (more than 20,000 words, or typesetting failed).
    CAPTIONS_REFUSED = "CAPTIONS_REFUSED"
