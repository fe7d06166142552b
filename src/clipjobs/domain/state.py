"""The job as the fold of its log: everything GET shows and the workers need."""

from __future__ import annotations

import zlib
from datetime import datetime, timedelta
from enum import StrEnum

from attrs import frozen

from ._machine import WORK, is_done
from .events import (
    ClipStep,
    GenerationParams,
    JobPolicy,
    MediaKind,
    MediaStored,
    ProviderStatus,
    Source,
    TimeoutLimit,
    Track,
)
from .i18n import Lang, cancelled_message, clip_step_text, progress_text, timeout_message
from .stages import Stage, Work

__all__ = ["Heartbeat", "JobState", "SendState"]

#: Polls are spread by up to this fraction of their interval either way.
POLL_JITTER = 0.2
TIMEOUT_ERROR_CODE = "JOB_TIMEOUT"
CANCELLED_ERROR_CODE = "JOB_CANCELLED"


#: Error codes a retry cannot help with: Suno would say the same again.
NOT_RETRYABLE = frozenset(
    {
        "SENSITIVE_WORD_ERROR",
        "SUNO_REJECTED",
        "SUNO_CONTENT_REJECTED",
        "SUNO_INVALID_PARAMETERS",
        "CALLBACK_URL_NOT_CONFIGURED",
    }
)


class SendState(StrEnum):
    """Where the generate call stands."""

    NOT_SENT = "not_sent"
    IN_FLIGHT = "in_flight"
    RETRY_WAIT = "retry_wait"
    UNCERTAIN = "uncertain"
    ACKNOWLEDGED = "acknowledged"


@frozen
class Heartbeat:
    """Is anyone still hearing from this job? (the seed's ``heartbeat``)"""

    seconds_since_update: int
    is_stale: bool


@frozen
class JobState:
    """A job folded from its log. Stores keep it as the projection row.

    Immutable; ``attrs.evolve(state, field=...)`` derives a changed copy.
    """

    job_id: str
    channel_id: str
    user_id: str
    request_id: str
    params: GenerationParams
    policy: JobPolicy
    idempotency_key: str | None
    fingerprint: str
    exclusive: bool
    stage: Stage
    version: int
    created_at: datetime
    updated_at: datetime
    #: When the job entered its current stage (stage durations, "in stage for").
    stage_since: datetime
    task_id: str | None = None
    provider_status: ProviderStatus | None = None
    tracks: tuple[Track, ...] = ()
    error_code: str | None = None
    error_message: str | None = None
    last_observed_at: datetime | None = None
    last_observation_source: Source | None = None
    observations: int = 0
    late_observations: int = 0
    #: Replayed observations counted instead of copied (``ObservationRepeated``).
    repeated_observations: int = 0
    #: Digests of the late observations kept, so an identical replay is counted, not copied.
    late_keys: tuple[str, ...] = ()
    send_attempts: int = 0
    send_state: SendState = SendState.NOT_SENT
    retry_at: datetime | None = None
    #: When the generate call became uncertain (a resend is due a while after).
    uncertain_since: datetime | None = None
    #: Uncertain calls sent again (at most one: never more than two Suno tasks per job).
    resends: int = 0
    clip_step: ClipStep | None = None
    clip_url: str | None = None
    #: The lyrics as subtitles beside the clip (``.srt``; the ``.ass`` shares its name).
    captions_url: str | None = None
    #: The kept copies of the tracks' files, one per (track, kind) (``MediaStored``).
    media: tuple[MediaStored, ...] = ()
    #: Files given up on (``track_id/kind``): a refusal, or failures past the limit.
    media_skipped: tuple[str, ...] = ()
    #: Failures in a row of the file being copied, and when it is tried again.
    media_attempts: int = 0
    media_retry_at: datetime | None = None
    #: The last copy failure (``mediaError`` in GET); a copy that succeeds clears it
    #: unless a file was given up.
    media_error_code: str | None = None
    media_error: str | None = None
    #: The last progress: a stage change or news from Suno (the timeout counts from it).
    #: None only in projections written before it existed (then: ``created_at``).
    progress_at: datetime | None = None
    #: Which limit timed the job out (None before there were two).
    timeout_limit: TimeoutLimit | None = None
    #: Who cancelled the job (STAGE_98); the reason is its ``error_message``.
    cancelled_by: str | None = None
    #: The job this one retries, and the latest job that retried this one.
    retry_of: str | None = None
    retried_by: str | None = None

    # --- what people see ---------------------------------------------------

    @property
    def done(self) -> bool:
        """True once nothing can change the stage any more (the machine has no edge out)."""
        return is_done(self.stage, self.policy.clip_render)

    @property
    def audio_url(self) -> str | None:
        """The first track with downloadable audio, once the job succeeded."""
        for track in self.tracks:
            if track.audio_url:
                return track.audio_url
        return None

    def progress_text(self, lang: Lang = "ru") -> str:
        text = progress_text(self.stage, lang)
        if self.stage is Stage.CLIP_PROCESSING and self.clip_step is not None:
            return f"{text} {clip_step_text(self.clip_step, lang)}"
        return text

    def error_text(self, lang: Lang = "ru") -> str | None:
        """The error for people: the timeout text in their language, else as recorded."""
        if self.stage is Stage.TIMEOUT:
            uncertain = self.send_state is SendState.UNCERTAIN
            if self.timeout_limit is TimeoutLimit.AGE:
                return timeout_message(self.policy.max_s, lang, uncertain=uncertain, age=True)
            return timeout_message(
                self.policy.timeout_s,
                lang,
                uncertain=uncertain,
                idle=self.timeout_limit is TimeoutLimit.PROGRESS,
            )
        if self.stage is Stage.CANCELLED:
            return cancelled_message(self.error_message, lang)
        return self.error_message

    def heartbeat(self, now: datetime, stale_after_s: float) -> Heartbeat:
        """Whole seconds since the last event; stale when not done and over the limit."""
        seconds = max(0, int((now - self.updated_at).total_seconds()))
        return Heartbeat(seconds, not self.done and seconds > stale_after_s)

    def stored(self, track_id: str, kind: MediaKind) -> MediaStored | None:
        """The kept copy of a track's file, if there is one."""
        for kept in self.media:
            if kept.track_id == track_id and kept.kind is kind:
                return kept
        return None

    # --- what the workers need --------------------------------------------

    @property
    def media_pending(self) -> tuple[tuple[str, MediaKind, str], ...]:
        """``(track_id, kind, url)`` of the files still to keep, in copy order."""
        if not self.policy.keep_media or self.provider_status is not ProviderStatus.SUCCESS:
            return ()
        pending = []
        for track in self.tracks:
            for kind, url in (
                (MediaKind.AUDIO, track.audio_url),
                (MediaKind.IMAGE, track.image_url),
            ):
                if not url or f"{track.id}/{kind.value}" in self.media_skipped:
                    continue
                if self.stored(track.id, kind) is None:
                    pending.append((track.id, kind, url))
        return tuple(pending)

    @property
    def work(self) -> Work | None:
        """The background work this job waits for, if any (the sweeper aside).

        Keeping the media comes first after success (the renderer then reads
        the kept audio) unless a copy has failed, and goes on after a terminal stage.
        """
        if self.media_pending and (
            self.done
            # Before a render, once: after a failed copy the clip need not wait for the CDN.
            or (self.stage is Stage.SUNO_SUCCESS and self.media_attempts == 0)
        ):
            return Work.MEDIA
        if self.done:
            return None
        if self.stage is Stage.SUNO_REQUEST_SENT and not self._send_pending:
            return None
        return WORK.get(self.stage)

    @property
    def _send_pending(self) -> bool:
        """STAGE_20 still needs the sender: a retry, a crashed call, or a resend due."""
        state = self.send_state
        if state is SendState.UNCERTAIN:
            return self.resend_allowed
        return state in (SendState.IN_FLIGHT, SendState.RETRY_WAIT)

    @property
    def resend_allowed(self) -> bool:
        """An uncertain call may be sent once more (never a third Suno task)."""
        return (
            self.send_state is SendState.UNCERTAIN
            and self.policy.resend_uncertain_after_s > 0
            and self.resends == 0
        )

    @property
    def due_at(self) -> datetime | None:
        """When :attr:`work` is due; workers take the oldest due first (fairly, by user)."""
        work = self.work
        if work is None:
            return None
        if work is Work.SEND:
            if self.send_state is SendState.RETRY_WAIT and self.retry_at is not None:
                return self.retry_at
            if self.send_state is SendState.UNCERTAIN and self.uncertain_since is not None:
                wait = timedelta(seconds=self.policy.resend_uncertain_after_s)
                return self.uncertain_since + wait
            return self.updated_at
        if work is Work.POLL:
            base = self.last_observed_at or self.updated_at
            polled = self.last_observation_source is Source.POLL
            delay = self.policy.poll_interval_s if polled else self.policy.poll_after_s
            return base + timedelta(seconds=delay * self._jitter())
        if work is Work.MEDIA and self.media_retry_at is not None:
            return self.media_retry_at
        return self.updated_at

    @property
    def deadline_at(self) -> datetime | None:
        """When the sweeper times the job out; only while Suno is still generating.

        The earlier of two limits: ``timeout_s`` after the last progress, and
        ``max_s`` after the job was accepted.
        """
        if self.done or self.stage.number >= Stage.SUNO_SUCCESS.number:
            return None
        return min(self._idle_deadline, self._age_deadline)

    @property
    def _idle_deadline(self) -> datetime:
        since = self.progress_at or self.created_at
        return since + timedelta(seconds=self.policy.timeout_s)

    @property
    def _age_deadline(self) -> datetime:
        return self.created_at + timedelta(seconds=max(self.policy.max_s, self.policy.timeout_s))

    def timeout_limit_at(self, now: datetime) -> TimeoutLimit | None:
        """Which limit has passed at ``now`` (the age first), if any."""
        if self.deadline_at is None:
            return None
        if now >= self._age_deadline:
            return TimeoutLimit.AGE
        if now >= self._idle_deadline:
            return TimeoutLimit.PROGRESS
        return None

    @property
    def retryable(self) -> bool | None:
        """Whether a retry can help a finished job (None while it is not finished as a failure).

        False when Suno turned the content or the parameters down (it would
        again), true for passing trouble, timeouts and cancels.
        """
        if self.stage in (Stage.TIMEOUT, Stage.CANCELLED):
            return True
        if self.stage is not Stage.FAILED:
            return None
        return self.error_code not in NOT_RETRYABLE

    @property
    def can_rerender(self) -> bool:
        """A retry from the clip is possible: the job ended without a clip but has its song."""
        return (
            self.stage in (Stage.FAILED, Stage.CANCELLED, Stage.TIMEOUT)
            and self.audio_url is not None
        )

    @property
    def channel_lock(self) -> str | None:
        """The key that keeps a second job off the channel while this one runs."""
        if self.exclusive and not self.done:
            return f"{self.user_id}\x1f{self.channel_id}"
        return None

    def _jitter(self) -> float:
        # Deterministic per (job, version), so the fold stays pure and every
        # process computes the same schedule.
        unit = zlib.crc32(f"{self.job_id}:{self.version}".encode()) / 0xFFFFFFFF
        return 1.0 + POLL_JITTER * (2.0 * unit - 1.0)
