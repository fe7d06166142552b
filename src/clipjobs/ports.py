"""The ports: what the core needs from the world, as ``typing.Protocol``s.

Adapters implement them; the service and the workers talk only to these.
``EventStore`` is designed for one SQLite file and for many processes on one
PostgreSQL database alike: leases and the change feed are part of it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, Protocol, Self, runtime_checkable

from attrs import frozen

from .events import ClipStep, Event, GenerationParams, Observation, TimestampedLyrics
from .stages import Work
from .state import JobState

__all__ = [
    "Authenticator",
    "Clock",
    "Commit",
    "EventStore",
    "GenerationParamsProvider",
    "OrphanCallback",
    "ParamOverrides",
    "PostProcessor",
    "RecordedEvent",
    "RenderedClip",
    "StepReporter",
    "SunoClient",
]


@frozen
class Commit:
    """Events to append to a job's log, and the job as it will be after them.

    ``expected_version`` is the version the events were decided on (0 for a
    new job). A store appends all of them as versions ``expected_version+1``…
    in one transaction and writes ``state`` as the job's projection row, or
    raises :class:`~clipjobs.errors.ConcurrencyError` and writes nothing.
    """

    job_id: str
    expected_version: int
    events: tuple[Event, ...]
    state: JobState


@frozen
class RecordedEvent:
    """One stored event with its version."""

    job_id: str
    version: int
    event: Event

    @property
    def recorded_at(self) -> datetime:
        return self.event.at


@frozen
class OrphanCallback:
    """A Suno callback that matched no job: kept for diagnosis, never dropped."""

    received_at: datetime
    task_id: str | None
    payload: str
    reason: str


@runtime_checkable
class EventStore(Protocol):
    """Append-only job logs, their projection rows, leases and a change feed.

    Every method may raise :class:`~clipjobs.errors.StoreUnavailable`; no
    driver exception escapes an implementation.
    """

    async def append(self, commit: Commit) -> None:
        """Append atomically, or raise ConcurrencyError (or a subclass) and change nothing.

        A new job (``expected_version == 0``) raises ``ChannelBusy`` when
        ``state.channel_lock`` is held by another job and
        ``IdempotencyConflict`` when ``(user_id, idempotency_key)`` is taken.
        """
        ...

    async def load(self, job_id: str) -> JobState | None:
        """The projection row: one indexed read whatever the log's length."""
        ...

    async def read(self, job_id: str, after_version: int = 0) -> list[RecordedEvent]:
        """The log (versions after ``after_version``), oldest first."""
        ...

    async def find_by_task_id(self, task_id: str) -> JobState | None: ...

    async def find_by_idempotency_key(self, user_id: str, key: str) -> JobState | None: ...

    async def find_channel_holder(self, user_id: str, channel_id: str) -> JobState | None:
        """The non-terminal job holding this user's channel, if any."""
        ...

    async def list_jobs(self, user_id: str, channel_id: str, limit: int = 20) -> list[JobState]:
        """The user's jobs on a channel, newest first."""
        ...

    async def claim(
        self, work: Work, now: datetime, *, owner: str, limit: int, lease_s: float
    ) -> list[JobState]:
        """Lease up to ``limit`` jobs whose ``work`` is due at ``now``, oldest due first.

        For ``Work.SWEEP``: non-terminal jobs whose ``deadline_at`` has passed.
        For the others: jobs with ``state.work == work`` and ``state.due_at <= now``.
        Jobs with a live lease for the same work (any owner) are skipped; two
        concurrent claims never return the same job.
        """
        ...

    async def renew(
        self, job_id: str, work: Work, now: datetime, *, owner: str, lease_s: float
    ) -> bool:
        """Extend a lease this owner holds; False when it was lost."""
        ...

    async def release(self, job_id: str, work: Work, *, owner: str) -> None:
        """Give up a lease (no error if it is gone)."""
        ...

    async def release_owner(self, owner: str) -> int:
        """Drop every lease of ``owner`` (a restarted process with a stable id)."""
        ...

    async def wait_for_change(self, job_id: str, version: int, timeout: float) -> bool:
        """Return True as soon as the job's version exceeds ``version``; False on timeout.

        Woken by commits from this process and, for shared databases, others.
        """
        ...

    async def ensure_secret(self, name: str, candidate: str) -> str:
        """Store ``candidate`` under ``name`` unless one is stored; return the stored one."""
        ...

    async def record_orphan(self, orphan: OrphanCallback) -> None: ...

    async def list_orphans(self, limit: int = 50) -> list[OrphanCallback]: ...

    async def count_active(self) -> int:
        """How many jobs have not finished."""
        ...

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers."""
        ...

    async def aclose(self) -> None:
        """Release everything; idempotent."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc: object) -> None: ...


class SunoClient(Protocol):
    """Suno's music API. Errors are :class:`~clipjobs.errors.SunoError` subclasses."""

    def validate(self, params: GenerationParams) -> None:
        """Raise InvalidRequest (with ``field``) when Suno would refuse these params."""
        ...

    async def generate(self, params: GenerationParams, callback_url: str) -> str:
        """Start a generation; the task id."""
        ...

    async def record_info(self, task_id: str) -> Observation: ...

    async def credits(self) -> int: ...

    async def timestamped_lyrics(self, task_id: str, audio_id: str) -> TimestampedLyrics:
        """A track's words with their times (none for an instrumental); ``audio_id`` is its id."""
        ...

    def parse_callback(self, payload: Mapping[str, Any]) -> Observation:
        """A callback body as an observation; SunoProtocolError when it is not one."""
        ...


class Clock(Protocol):
    """Time, injected so tests can move it."""

    def now(self) -> datetime:
        """Timezone-aware UTC."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class Authenticator(Protocol):
    async def authenticate(self, token: str) -> str | None:
        """The user id a bearer token belongs to, or None."""
        ...


@frozen
class ParamOverrides:
    """Generation params a runOnce body may set; None means "the channel's default"."""

    prompt: str | None = None
    style: str | None = None
    title: str | None = None
    custom_mode: bool | None = None
    instrumental: bool | None = None
    model: str | None = None
    negative_tags: str | None = None


class GenerationParamsProvider(Protocol):
    async def params_for(
        self, channel_id: str, user_id: str, overrides: ParamOverrides
    ) -> GenerationParams:
        """The params to generate with for this channel (its defaults, then overrides)."""
        ...


StepReporter = Callable[[ClipStep], Awaitable[None]]


@frozen
class RenderedClip:
    """What post-processing made: the clip's URL, its captions' URL, and a note on what it lacks."""

    url: str
    captions_url: str | None = None
    #: Why the clip lacks something it would normally have (no captions: the lyrics call failed).
    note: str | None = None


class PostProcessor(Protocol):
    async def process(self, job: JobState, report: StepReporter) -> RenderedClip | str:
        """Turn a succeeded job into a clip. Raise PostProcessError on failure.

        A bare string is the clip's URL (what post-processors returned before
        ``RenderedClip``); the service accepts both.
        """
        ...
