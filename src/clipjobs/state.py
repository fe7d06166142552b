"""The job as the fold of its log: everything GET shows and the workers need."""

from __future__ import annotations

import zlib
from datetime import datetime, timedelta
from enum import StrEnum
from typing import NamedTuple

from attrs import frozen

from .events import (
    ClipStep,
    GenerationParams,
    JobPolicy,
    ProviderStatus,
    Source,
    Track,
)
from .i18n import Lang, clip_step_text, progress_text, timeout_message
from .stages import TERMINAL_STAGES, Stage, Work

__all__ = ["Heartbeat", "JobState", "SendState"]

#: Polls are spread by up to this fraction of their interval either way.
POLL_JITTER = 0.2
TIMEOUT_ERROR_CODE = "JOB_TIMEOUT"


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


class JobState(NamedTuple):
    """A job folded from its log. Stores keep it as the projection row.

    A ``NamedTuple`` rather than an attrs class on purpose: it is built on
    every fold (every append, every history read), and a tuple is built in a
    fraction of the time, which keeps folding a 10-event log over 100x
    cheaper than a ``transitions`` machine per job. It is immutable all the
    same; use ``_replace`` to derive a changed copy in tests.
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
    send_attempts: int = 0
    send_state: SendState = SendState.NOT_SENT
    retry_at: datetime | None = None
    clip_step: ClipStep | None = None
    clip_url: str | None = None
    #: The lyrics as subtitles beside the clip (``.srt``; the ``.ass`` shares its name).
    captions_url: str | None = None

    # --- what people see ---------------------------------------------------

    @property
    def done(self) -> bool:
        """True once nothing can change the stage any more."""
        if self.stage is Stage.SUNO_SUCCESS:
            return not self.policy.clip_render
        return self.stage in TERMINAL_STAGES

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
            return timeout_message(self.policy.timeout_s, lang)
        return self.error_message

    def heartbeat(self, now: datetime, stale_after_s: float) -> Heartbeat:
        """Whole seconds since the last event; stale when not done and over the limit."""
        seconds = max(0, int((now - self.updated_at).total_seconds()))
        return Heartbeat(seconds, not self.done and seconds > stale_after_s)

    # --- what the workers need --------------------------------------------

    @property
    def work(self) -> Work | None:
        """The background work this job waits for, if any (the sweeper aside)."""
        if self.done:
            return None
        stage = self.stage
        if stage is Stage.REQUEST_ACCEPTED:
            return Work.SEND
        if stage is Stage.SUNO_REQUEST_SENT:
            if self.send_state in (SendState.IN_FLIGHT, SendState.RETRY_WAIT):
                return Work.SEND
            return None
        if stage in (Stage.SUNO_TASK_CREATED, Stage.SUNO_PENDING):
            return Work.POLL
        return Work.RENDER

    @property
    def due_at(self) -> datetime | None:
        """When :attr:`work` is due; workers take the oldest due first."""
        work = self.work
        if work is None:
            return None
        if work is Work.SEND:
            if self.send_state is SendState.RETRY_WAIT and self.retry_at is not None:
                return self.retry_at
            return self.updated_at
        if work is Work.POLL:
            base = self.last_observed_at or self.updated_at
            polled = self.last_observation_source is Source.POLL
            delay = self.policy.poll_interval_s if polled else self.policy.poll_after_s
            return base + timedelta(seconds=delay * self._jitter())
        return self.updated_at

    @property
    def deadline_at(self) -> datetime | None:
        """When the sweeper times the job out; only while Suno is still generating."""
        if self.done or self.stage.number >= Stage.SUNO_SUCCESS.number:
            return None
        return self.created_at + timedelta(seconds=self.policy.timeout_s)

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
