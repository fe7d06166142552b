"""The ports: what the core needs from the world, as ``typing.Protocol``s.

Adapters implement them; the service and the workers talk only to these.
``EventStore`` is designed for one SQLite file and for many processes on one
PostgreSQL database alike: leases, the fair queue, the registry of live
workers and the change feed are part of it. ``CallBudget`` meters every Suno
call of an account: per process (``SunoBudget``) or shared by every process
of one PostgreSQL database.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from enum import IntEnum
from typing import Any, Protocol, Self, runtime_checkable

from attrs import frozen

from ..domain.events import ClipStep, Event, GenerationParams, Observation, TimestampedLyrics
from ..domain.fleet import JobFilter, PageKey
from ..domain.stages import Stage, Work
from ..domain.state import JobState
from .changes import ChangeFeed

__all__ = [
    "Authenticator",
    "BudgetStatus",
    "CallBudget",
    "Clock",
    "Commit",
    "Due",
    "EventStore",
    "GenerationParamsProvider",
    "Identity",
    "Lease",
    "OrphanCallback",
    "ParamOverrides",
    "PostProcessor",
    "Priority",
    "RecordedEvent",
    "RenderedClip",
    "Slot",
    "StepReporter",
    "SunoClient",
    "WorkerInfo",
]


@frozen
class Commit:
    """Events to append to a job's log, and the job as it will be after them.

    ``expected_version`` is the version the events were decided on (0 for a
    new job). A store appends all of them as versions ``expected_version+1``…
    in one transaction and writes ``state`` as the job's projection row, or
    raises :class:`~clipjobs.domain.errors.ConcurrencyError` and writes nothing.
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


@frozen
class Due:
    """A job waiting for a kind of work, as the fair queue orders it."""

    job_id: str
    user_id: str
    due_at: datetime


@frozen
class WorkerInfo:
    """A worker process as it announced itself in the store."""

    worker_id: str
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime


@frozen
class Lease:
    """A worker's claim on one kind of work for one job, until ``until``."""

    job_id: str
    work: Work
    owner: str
    until: datetime


@runtime_checkable
class EventStore(Protocol):
    """Append-only job logs, their projection rows, leases and a change feed.

    Every method may raise :class:`~clipjobs.domain.errors.StoreUnavailable`; no
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

    async def find_jobs(
        self, where: JobFilter, *, after: PageKey | None = None, limit: int = 50
    ) -> list[JobState]:
        """Jobs ``where`` selects, newest first (``created_at``, then ``job_id``, descending).

        ``after`` continues a list: only jobs strictly older than that key.
        Backed by indexes, so a deep page costs what the first one does.
        """
        ...

    async def count_jobs(self, where: JobFilter) -> dict[Stage, int]:
        """How many jobs ``where`` selects, by stage (stages with none are left out)."""
        ...

    def changes(self) -> ChangeFeed:
        """A feed of every job changed from now on, by any process sharing the store."""
        ...

    async def claim(
        self, work: Work, now: datetime, *, owner: str, limit: int, lease_s: float
    ) -> list[JobState]:
        """Lease up to ``limit`` jobs whose ``work`` is due at ``now``, in queue order.

        For ``Work.SWEEP``: non-terminal jobs whose ``deadline_at`` has passed.
        For the others: jobs with ``state.work == work`` and ``state.due_at <= now``.
        Jobs with a live lease for the same work (any owner) are skipped; two
        concurrent claims never return the same job. SEND and POLL are taken in
        :func:`clipjobs.fair_order` (round-robin by user, each user's oldest
        first, users served longest ago first: the store remembers when it last
        handed out each user's job for that work); SWEEP and RENDER oldest due first.
        """
        ...

    async def queue(self, work: Work, now: datetime, limit: int) -> list[Due]:
        """The jobs ``claim`` would take now, in its order (up to ``limit``), taking none."""
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

    async def leases(self, owner: str | None = None) -> list[Lease]:
        """The leases held now (of ``owner``, or everyone's), expired ones included."""
        ...

    async def register_worker(self, worker: WorkerInfo) -> None:
        """Announce (or announce again) a worker; its heartbeat starts at ``heartbeat_at``."""
        ...

    async def heartbeat(self, worker_id: str, now: datetime) -> bool:
        """Record that the worker is alive at ``now``; False when it is not registered."""
        ...

    async def workers(self) -> list[WorkerInfo]:
        """Every registered worker, oldest first."""
        ...

    async def reap_worker(self, worker_id: str) -> int:
        """Forget a dead worker and free every lease it held; how many leases were freed."""
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

    async def count_active(self, user_id: str | None = None) -> int:
        """How many jobs have not finished (of ``user_id``, or everyone's)."""
        ...

    async def count_created(self, user_id: str, since: datetime) -> int:
        """How many jobs ``user_id`` created at or after ``since``."""
        ...

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers."""
        ...

    async def aclose(self) -> None:
        """Release everything; idempotent."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc: object) -> None: ...


class Priority(IntEnum):
    """Who goes first when Suno calls wait: a lower value is served earlier."""

    GENERATE = 0
    POLL = 1
    CREDITS = 2


@frozen
class Slot:
    """A turn a ``CallBudget`` granted: the Suno call may start now.

    ``ident`` tells the budget which start it was (a row, a sequence number).
    """

    started_at: datetime
    priority: Priority
    ident: int


@frozen
class BudgetStatus:
    """The budget as it stands: what ``/readyz``, ``/metrics`` and queue ETAs read."""

    #: Calls that may start per window now (halved after 430s).
    limit: int
    window_s: float
    #: When each call counted in the window now stops counting, earliest first.
    counted_until: tuple[datetime, ...]
    #: Calls of this process waiting for a turn (a shared budget adds one for
    #: each other process that has calls waiting).
    waiting: int
    #: When a 430/405 pause ends, if one is in force.
    paused_until: datetime | None
    #: The latest start: the next comes at least ``window_s / limit`` after it (pacing).
    last_started_at: datetime | None = None

    @property
    def calls_in_window(self) -> int:
        return len(self.counted_until)

    @property
    def headroom(self) -> int:
        """Calls that could start now without waiting (0 while paused)."""
        if self.paused_until is not None:
            return 0
        return max(0, self.limit - self.calls_in_window - self.waiting)

    def eta(self, now: datetime, ahead: int) -> float:
        """Seconds until a call with ``ahead`` calls before it may start, at the current rate.

        Each of the ``limit`` slots of the window frees when the call counted in
        it stops counting, then every ``window_s``: the call ``ahead`` places
        back takes slot ``ahead % limit`` in round ``ahead // limit``. Pacing
        keeps it ``ahead + 1`` gaps of ``window_s / limit`` after the latest start.
        """
        start = max(now, self.paused_until or now)
        tail = self.counted_until[max(0, len(self.counted_until) - self.limit) :]
        slots = [start] * (self.limit - len(tail)) + [max(t, start) for t in tail]
        turn, slot = divmod(max(0, ahead), self.limit)
        when = slots[slot] + timedelta(seconds=turn * self.window_s)
        if self.last_started_at is not None:
            gap = timedelta(seconds=self.window_s / self.limit)
            when = max(when, self.last_started_at + gap * (max(0, ahead) + 1))
        return max(0.0, (when - now).total_seconds())


class CallBudget(Protocol):
    """One Suno account's rate limit, shared by every call (and every process) using it.

    Waiters are served by :class:`Priority` (generate, then polls, then credit
    checks), first come first served within one. A 430/405 answer pauses every
    call and slows the rate. Errors are ``SunoTransient`` (the budget closed)
    or ``StoreUnavailable`` (a shared budget whose database went away).
    """

    async def acquire(self, priority: Priority) -> Slot:
        """Wait for a turn; the call starts as soon as this returns."""
        ...

    async def try_acquire(self, priority: Priority) -> Slot | None:
        """A turn only if one is free right now and nobody waits; never queues."""
        ...

    async def finished(self, slot: Slot) -> None:
        """The call's answer came: it counts until a window after now (Suno counts arrivals)."""
        ...

    async def unused(self, slot: Slot) -> None:
        """The turn was not used (there was nothing to send after all): give it back."""
        ...

    async def rate_limited(self) -> None:
        """Suno answered 430/405: pause every call and halve the rate."""
        ...

    async def status(self) -> BudgetStatus: ...

    async def aclose(self) -> None:
        """Fail every waiter with SunoTransient and refuse new calls; idempotent."""
        ...


class SunoClient(Protocol):
    """Suno's music API. Errors are :class:`~clipjobs.domain.errors.SunoError` subclasses."""

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


@frozen
class Identity:
    """Who a token belongs to; an admin sees and acts on every job (SPEC 10.3)."""

    user_id: str
    admin: bool = False


class Authenticator(Protocol):
    async def authenticate(self, token: str) -> str | Identity | None:
        """Who a bearer token belongs to, or None.

        A bare user id is a user who sees their own jobs; return an
        :class:`Identity` with ``admin=True`` for one who sees every job.
        """
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
