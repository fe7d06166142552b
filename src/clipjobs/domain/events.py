"""The events of a job's log (SPEC section 3) and the values they carry.

Every event is a frozen ``attrs`` class with the moment it happened in ``at``
(timezone-aware UTC). Nothing here reads a clock: the service stamps commands,
commands become events, and the fold only copies times it is given.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import StrEnum

from attrs import field, frozen

__all__ = [
    "AlignedWord",
    "ClipProcessingStarted",
    "ClipReady",
    "ClipStep",
    "ClipStepReached",
    "Event",
    "GenerationParams",
    "JobAccepted",
    "JobCancelled",
    "JobFailed",
    "JobPolicy",
    "JobRetried",
    "JobTimedOut",
    "LateObservation",
    "MediaCopyFailed",
    "MediaKind",
    "MediaStored",
    "Observation",
    "ObservationRepeated",
    "ProviderStatus",
    "Source",
    "SunoProgressObserved",
    "SunoRequestRetryScheduled",
    "SunoRequestSent",
    "SunoRequestUncertain",
    "SunoSucceeded",
    "SunoTaskCreated",
    "TimeoutLimit",
    "TimestampedLyrics",
    "Track",
]


class ProviderStatus(StrEnum):
    """A task's status as Suno reports it (record-info ``status``)."""

    PENDING = "PENDING"
    TEXT_SUCCESS = "TEXT_SUCCESS"
    FIRST_SUCCESS = "FIRST_SUCCESS"
    SUCCESS = "SUCCESS"
    CREATE_TASK_FAILED = "CREATE_TASK_FAILED"
    GENERATE_AUDIO_FAILED = "GENERATE_AUDIO_FAILED"
    CALLBACK_EXCEPTION = "CALLBACK_EXCEPTION"
    SENSITIVE_WORD_ERROR = "SENSITIVE_WORD_ERROR"

    @property
    def is_failure(self) -> bool:
        return self in _FAILURES

    @property
    def is_progress(self) -> bool:
        return self in _PROGRESS


_FAILURES = frozenset(
    {
        ProviderStatus.CREATE_TASK_FAILED,
        ProviderStatus.GENERATE_AUDIO_FAILED,
        ProviderStatus.CALLBACK_EXCEPTION,
        ProviderStatus.SENSITIVE_WORD_ERROR,
    }
)
_PROGRESS = frozenset(
    {ProviderStatus.PENDING, ProviderStatus.TEXT_SUCCESS, ProviderStatus.FIRST_SUCCESS}
)


class Source(StrEnum):
    """Where an observation of Suno came from."""

    CALLBACK = "callback"
    POLL = "poll"
    GENERATE = "generate"
    #: The tracks of the job this one retries (a re-render: no Suno call).
    REUSED = "reused"


class ClipStep(StrEnum):
    """The step post-processing is on while the job is in STAGE_60."""

    DOWNLOADING = "downloading"
    RENDERING = "rendering"


class MediaKind(StrEnum):
    """Which file of a track is kept: its audio or its cover."""

    AUDIO = "audio"
    IMAGE = "image"


@frozen
class Track:
    """One generated song (Suno yields two per request)."""

    id: str
    audio_url: str = ""
    stream_audio_url: str = ""
    image_url: str = ""
    title: str = ""
    duration: float | None = None


#: Every model name Suno accepts, in its spelling (the Suno adapter keeps each one's limits).
SUNO_MODELS: tuple[str, ...] = ("V3_5", "V4", "V4_5", "V4_5PLUS", "V4_5ALL", "V5", "V5_5")


@frozen
class GenerationParams:
    """What is sent to Suno's generate endpoint (besides the callback URL)."""

    prompt: str = ""
    style: str | None = None
    title: str | None = None
    custom_mode: bool = False
    instrumental: bool = False
    model: str = "V4_5"
    negative_tags: str | None = None


@frozen
class JobPolicy:
    """Timings and options fixed for a job when it is accepted.

    They travel on ``JobAccepted`` so that the fold, and the schedule the
    workers follow, depend on the log alone.
    """

    timeout_s: int = 600
    poll_after_s: float = 30.0
    poll_interval_s: float = 15.0
    clip_render: bool = False
    #: An uncertain send is sent once more after this long without a callback
    #: naming the job (``CLIPJOBS_RESEND_UNCERTAIN_AFTER_S``); 0: never.
    resend_uncertain_after_s: float = 120.0
    #: Copy each track's audio and cover into media storage after success
    #: (SPEC 10.4); off in logs written before it existed.
    keep_media: bool = False
    #: ``CLIPJOBS_JOB_MAX_S``: a job still generating this long after it was
    #: accepted times out however much progress it makes (``timeout_s`` counts
    #: from the last progress).
    max_s: int = 1800


@frozen
class Observation:
    """What Suno said about a task, from a callback or from record-info."""

    task_id: str
    status: ProviderStatus
    tracks: tuple[Track, ...] = ()
    error_code: int | None = None
    error_message: str | None = None


@frozen
class AlignedWord:
    """One sung word as Suno's aligner placed it, times in seconds from the song's start.

    ``word`` is Suno's text as it came: it may carry section tags
    (``"[Verse]\\nWaggin'"``) and newlines. ``success`` is False for a word the
    aligner could not place (its times mean little).
    """

    word: str
    start_s: float
    end_s: float
    success: bool = True
    palign: float = 0.0


@frozen
class TimestampedLyrics:
    """A track's words with their times, and a loudness outline for drawing (0–1 each).

    Instrumental tracks have no words. ``waveform`` is Suno's ``waveformData``:
    evenly spaced over the song, meant for visualisation.
    """

    aligned_words: tuple[AlignedWord, ...] = ()
    waveform: tuple[float, ...] = ()


# --- events -----------------------------------------------------------------


@frozen
class JobAccepted:
    """A job was created: it is in STAGE_10 and waits for the sender."""

    job_id: str
    channel_id: str
    user_id: str
    request_id: str
    params: GenerationParams
    at: datetime
    idempotency_key: str | None = None
    #: A digest of the request, to tell a retried request from a reused key.
    fingerprint: str = ""
    policy: JobPolicy = field(factory=JobPolicy)
    #: Whether this job holds its channel until it ends (JOB_ALREADY_RUNNING).
    exclusive: bool = True
    #: The job this one retries (``POST .../retry``); absent from logs written before.
    retry_of: str | None = None


@frozen
class SunoRequestSent:
    """The Suno budget granted the generate call and it leaves now (attempt 1, 2, ...).

    ``reason`` says why an attempt after the first was made (a retry after a
    transient error, or a resend of an uncertain call).
    """

    attempt: int
    at: datetime
    reason: str | None = None


@frozen
class SunoRequestRetryScheduled:
    """The generate call failed before Suno acted on it; try again at ``retry_at``."""

    attempt: int
    error: str
    retry_at: datetime
    at: datetime


@frozen
class SunoRequestUncertain:
    """A generate call may have reached Suno but no task id came back.

    It is not re-sent blindly (credits would be spent twice): a callback naming
    the job adopts the task; without one, it is sent once more after the
    policy's ``resend_uncertain_after_s`` (0: never; the job then times out).
    """

    reason: str
    at: datetime


@frozen
class SunoTaskCreated:
    """Suno gave the job a task id."""

    task_id: str
    source: Source
    at: datetime


@frozen
class SunoProgressObserved:
    """Suno reported progress; every observation is the heartbeat."""

    status: ProviderStatus
    source: Source
    at: datetime
    tracks: tuple[Track, ...] = ()


@frozen
class SunoSucceeded:
    """The audio is ready."""

    source: Source
    tracks: tuple[Track, ...]
    at: datetime


@frozen
class JobFailed:
    """The job failed for good; ``error_code`` is machine-readable."""

    error_code: str
    message: str
    at: datetime


class TimeoutLimit(StrEnum):
    """Which limit timed a job out."""

    #: No progress (a stage change, or news from Suno) for ``timeout_s``.
    PROGRESS = "progress"
    #: Older than ``max_s`` while still generating.
    AGE = "age"


@frozen
class JobTimedOut:
    """No result within the job's limits.

    ``limit``: which one fired; ``timeout_s`` is that limit's length. Logs
    written before there were two limits carry none (the timeout then
    counted from the job's creation).
    """

    timeout_s: int
    at: datetime
    limit: TimeoutLimit | None = None


@frozen
class JobCancelled:
    """Someone stopped the job (STAGE_98): nothing is sent, polled or rendered after it."""

    by: str
    reason: str | None
    at: datetime


@frozen
class JobRetried:
    """A new job was started to retry this finished one; it changes no stage.

    ``mode``: ``start`` (the whole job again) or ``clip`` (the parent's tracks,
    post-processing only).
    """

    retry_job_id: str
    mode: str
    at: datetime


@frozen
class LateObservation:
    """Something Suno said that can no longer change the job: recorded, not lost.

    ``reason``: ``after_terminal`` (the job had ended), ``duplicate`` (the
    result was already recorded), ``stale`` (older news than the stage), or
    ``task_mismatch`` (another task id than the job's).
    """

    reason: str
    source: Source
    at: datetime
    task_id: str | None = None
    status: ProviderStatus | None = None
    tracks: tuple[Track, ...] = ()
    detail: str | None = None

    @property
    def key(self) -> str:
        """What makes two late observations the same, their time aside (a replay)."""
        said = (self.reason, self.source, self.task_id, self.status, self.tracks, self.detail)
        return hashlib.sha256(repr(said).encode()).hexdigest()[:16]


@frozen
class ObservationRepeated:
    """Suno said again exactly what was recorded last (a replayed callback): counted, not copied.

    It keeps the log small whatever a caller replays, and it is still a sign of life.
    """

    source: Source
    at: datetime


@frozen
class ClipProcessingStarted:
    """Post-processing began (STAGE_60)."""

    at: datetime


@frozen
class ClipStepReached:
    """Post-processing moved on to a step (downloading, rendering)."""

    step: ClipStep
    at: datetime


@frozen
class ClipReady:
    """The clip was rendered; ``clip_url`` is where the server serves it.

    ``captions_url``: the lyrics as subtitles beside the clip, when the song
    has any. ``note``: what the clip lacks and why (e.g. the lyrics call
    failed, so no captions) — the clip is made all the same. Both are absent
    from logs written before they existed.
    """

    clip_url: str
    at: datetime
    captions_url: str | None = None
    note: str | None = None


@frozen
class MediaStored:
    """A copy of one track's audio or cover is kept in media storage (content-addressed).

    It changes no stage and may follow a terminal one: Suno's links expire, the copy stays.
    """

    track_id: str
    kind: MediaKind
    sha256: str
    bytes: int
    content_type: str
    at: datetime


@frozen
class MediaCopyFailed:
    """Copying one track's file failed; ``retry_at`` is when it is tried again (None: never).

    ``attempt`` counts the failures in a row of the file being copied. The job's
    stage and its success stay as they are.
    """

    track_id: str
    kind: MediaKind
    error_code: str
    message: str
    attempt: int
    at: datetime
    retry_at: datetime | None = None


Event = (
    JobAccepted
    | SunoRequestSent
    | SunoRequestRetryScheduled
    | SunoRequestUncertain
    | SunoTaskCreated
    | SunoProgressObserved
    | SunoSucceeded
    | JobFailed
    | JobTimedOut
    | JobCancelled
    | JobRetried
    | LateObservation
    | ObservationRepeated
    | ClipProcessingStarted
    | ClipStepReached
    | ClipReady
    | MediaStored
    | MediaCopyFailed
)
