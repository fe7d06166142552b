"""Commands: what someone asks of a job. ``decide`` turns them into events.

Each carries ``at``, the moment it was issued (read from the service's clock),
so that deciding stays pure.
"""

from __future__ import annotations

from datetime import datetime

from attrs import field, frozen

from .events import (
    ClipStep,
    GenerationParams,
    JobPolicy,
    MediaKind,
    Observation,
    Source,
    Track,
)

__all__ = [
    "CancelJob",
    "Command",
    "FailJob",
    "FailMediaCopy",
    "FinishClip",
    "KeepMedia",
    "MarkRequestSent",
    "MarkRequestUncertain",
    "RecordClipStep",
    "RecordObservation",
    "RecordRetry",
    "RecordTaskCreated",
    "ScheduleRetry",
    "StartClip",
    "StartJob",
    "TimeOut",
]


@frozen
class StartJob:
    job_id: str
    channel_id: str
    user_id: str
    request_id: str
    params: GenerationParams
    at: datetime
    idempotency_key: str | None = None
    fingerprint: str = ""
    policy: JobPolicy = field(factory=JobPolicy)
    exclusive: bool = True
    #: The job this one retries.
    retry_of: str | None = None
    #: A re-render: the parent's tracks, recorded as a success at once (no Suno call).
    reused_tracks: tuple[Track, ...] = ()


@frozen
class MarkRequestSent:
    """The sender is about to call generate."""

    at: datetime


@frozen
class ScheduleRetry:
    """The generate call failed and Suno did not act on it."""

    error: str
    retry_at: datetime
    at: datetime


@frozen
class MarkRequestUncertain:
    """The generate call may have reached Suno; do not send it again."""

    reason: str
    at: datetime


@frozen
class RecordTaskCreated:
    task_id: str
    at: datetime


@frozen
class RecordObservation:
    """Suno said something about the job's task (callback or poll)."""

    observation: Observation
    source: Source
    at: datetime


@frozen
class FailJob:
    error_code: str
    message: str
    at: datetime


@frozen
class TimeOut:
    at: datetime


@frozen
class StartClip:
    at: datetime


@frozen
class RecordClipStep:
    step: ClipStep
    at: datetime


@frozen
class FinishClip:
    clip_url: str
    at: datetime
    captions_url: str | None = None
    note: str | None = None


@frozen
class KeepMedia:
    """A track's file was copied into media storage."""

    track_id: str
    kind: MediaKind
    sha256: str
    bytes: int
    content_type: str
    at: datetime


@frozen
class CancelJob:
    """Stop the job: ``by`` who (a user id, an admin's name), and why if they said."""

    by: str
    reason: str | None
    at: datetime


@frozen
class FailMediaCopy:
    """Copying a track's file failed; try again at ``retry_at`` (None: give it up)."""

    track_id: str
    kind: MediaKind
    error_code: str
    message: str
    at: datetime
    retry_at: datetime | None = None


@frozen
class RecordRetry:
    """A job retrying this finished one was started (``mode``: ``start`` or ``clip``)."""

    retry_job_id: str
    mode: str
    at: datetime


Command = (
    StartJob
    | MarkRequestSent
    | ScheduleRetry
    | MarkRequestUncertain
    | RecordTaskCreated
    | RecordObservation
    | FailJob
    | TimeOut
    | StartClip
    | RecordClipStep
    | FinishClip
    | KeepMedia
    | FailMediaCopy
    | CancelJob
    | RecordRetry
)
