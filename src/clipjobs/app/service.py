"""``JobService``: the application layer. It talks only to the ports.

Every change follows one path: load the projection, ``decide`` with a
timestamped command, ``fold`` the new events onto the state, append with the
expected version, and on a ``ConcurrencyError`` start over from the load.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import attrs
from attrs import asdict, define, field, frozen

from ..domain._decide import decide
from ..domain._fold import fold
from ..domain.codec import encode_event
from ..domain.commands import (
    Command,
    FailJob,
    FinishClip,
    MarkRequestSent,
    MarkRequestUncertain,
    RecordClipStep,
    RecordObservation,
    RecordTaskCreated,
    ScheduleRetry,
    StartClip,
    TimeOut,
)
from ..domain.errors import (
    ChannelBusy,
    ClipjobsError,
    ConcurrencyError,
    IdempotencyConflict,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    InvalidRequest,
    JobAlreadyRunning,
    JobNotFound,
    PostProcessError,
    SunoError,
    SunoNoCredits,
    SunoProtocolError,
    SunoRejected,
    SunoTransient,
    TooManyJobs,
)
from ..domain.events import (
    ClipStep,
    Event,
    JobAccepted,
    JobFailed,
    JobPolicy,
    LateObservation,
    ObservationRepeated,
    Source,
    SunoSucceeded,
    Track,
)
from ..domain.fleet import JobFilter, PageKey
from ..domain.stages import Stage, Work
from ..domain.state import JobState, SendState
from . import _acting
from .budget import BudgetedSuno, SunoBudget, run_in_slot
from .changes import ChangeFeed
from .ids import new_job_id, new_request_id
from .keeping import KeepConfig, MediaKeeper, keep_media
from .logs import current_request_id, job_log, pipeline_log
from .metrics import Metrics
from .ports import (
    BudgetStatus,
    CallBudget,
    Clock,
    Commit,
    EventStore,
    GenerationParamsProvider,
    Lease,
    OrphanCallback,
    ParamOverrides,
    PostProcessor,
    Priority,
    RecordedEvent,
    RenderedClip,
    Slot,
    SunoClient,
    WorkerInfo,
)
from .webhook import WebhookSigner

__all__ = [
    "CallbackResult",
    "ErrorCode",
    "JobRequest",
    "JobService",
    "QueuePosition",
    "ServiceConfig",
    "ServiceStatus",
    "StartOutcome",
    "Unauthorized",
]

_CHANNEL_ID = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


class ErrorCode(StrEnum):
    """Machine-readable ``errorCode``s the service records (Suno statuses aside)."""

    CALLBACK_URL_NOT_CONFIGURED = "CALLBACK_URL_NOT_CONFIGURED"
    SUNO_NO_CREDITS = "SUNO_NO_CREDITS"
    SUNO_REJECTED = "SUNO_REJECTED"
    SUNO_UNAVAILABLE = "SUNO_UNAVAILABLE"
    CLIP_RENDER_TIMEOUT = "CLIP_RENDER_TIMEOUT"
    CLIP_FAILED = "CLIP_FAILED"


_MESSAGES = {
    ErrorCode.CALLBACK_URL_NOT_CONFIGURED: (
        "Callback URL not configured. Set PUBLIC_BASE_URL environment variable."
    ),
    ErrorCode.SUNO_NO_CREDITS: "Недостаточно кредитов Suno для генерации. Пополните баланс.",
}


class Unauthorized(Exception):
    """A webhook call without a valid per-job token (not a ClipjobsError: it is an answer)."""


@frozen
class ServiceConfig:
    """What the service needs to know beyond its ports."""

    policy: JobPolicy = field(factory=JobPolicy)
    stale_after_s: float = 60.0
    #: 409 JOB_ALREADY_RUNNING while the user's channel has a non-terminal job.
    one_job_per_channel: bool = True
    #: ``PUBLIC_BASE_URL``: where Suno's callbacks can reach this server.
    callback_base_url: str | None = None
    credit_check_timeout_s: float = 1.0
    #: A positive credit count is trusted this long; a 0 only ``credit_zero_cache_s``
    #: (a top-up counts at once for the user who just paid).
    credit_cache_s: float = 30.0
    credit_zero_cache_s: float = 3.0
    #: ``CLIPJOBS_MAX_ACTIVE_PER_USER``: over it runOnce answers 429 and creates nothing
    #: (0: no limit).
    max_active_per_user: int = 20
    #: ``CLIPJOBS_MAX_STARTS_PER_USER_PER_HOUR``: 0 means no limit.
    max_starts_per_user_per_hour: int = 0
    #: ``Retry-After`` of a 429 for too many jobs.
    too_many_retry_after_s: int = 30
    #: How long a queue snapshot (positions, ETAs) is reused.
    queue_refresh_s: float = 1.0
    send_max_attempts: int = 5
    send_backoff_s: float = 2.0
    send_backoff_max_s: float = 60.0
    render_timeout_s: float = 300.0
    conflict_retries: int = 50


@frozen
class JobRequest:
    """A runOnce request, already authenticated."""

    channel_id: str
    user_id: str
    overrides: ParamOverrides = field(factory=ParamOverrides)
    idempotency_key: str | None = None
    request_id: str | None = None


@frozen
class StartOutcome:
    """What runOnce answers: the job, and whether it was made by this call."""

    job: JobState
    created: bool

    @property
    def failed_at_once(self) -> str | None:
        """The error code when the job was created and failed in the same breath."""
        return self.job.error_code if self.job.stage is Stage.FAILED else None


@frozen
class ServiceStatus:
    """The service as operators see it (``/readyz``, ``/metrics``)."""

    workers: list[WorkerInfo]
    leases: list[Lease]
    budget: BudgetStatus
    #: Jobs waiting for their generate call, and how many each user has waiting.
    queued: int
    waiting_by_user: dict[str, int]
    #: The last credit count Suno gave (None: not asked yet).
    credits: int | None


@frozen
class QueuePosition:
    """Where a job waiting for its Suno call stands: jobs ahead of it, and when its turn comes."""

    position: int
    eta_s: float


class CallbackResult(StrEnum):
    RECORDED = "recorded"
    #: The same as the last observation: counted, not copied.
    DUPLICATE = "duplicate"
    LATE = "late"
    #: Past the per-job cap of late or repeated observations: only counted in metrics.
    DROPPED = "dropped"
    ORPHAN = "orphan"
    FORGED = "forged"
    UNREADABLE = "unreadable"


#: Jobs of the send queue a snapshot reads (a job further back shows this many ahead).
_QUEUE_SEEN = 10_000


@frozen
class _QueueSnapshot:
    read_at: datetime  # the service clock's time of the read
    positions: dict[str, int]
    by_user: dict[str, int]
    budget: BudgetStatus


@frozen
class _Credits:
    count: int
    at: datetime


@define
class _UserTurn:
    """One user's runOnce lock, and how many runOnce calls hold or wait for it."""

    lock: asyncio.Lock = field(factory=asyncio.Lock)
    users: int = 0


class JobService:
    """Starts jobs, records what Suno says, and does each worker's one step.

    The application's facade: HTTP handlers and the workers call it and reach
    nothing behind it. ``budget`` is where every Suno call of the account
    waits its turn; without one the service makes (and owns) an in-process
    window of 20 calls per 10 s without pacing, which a test's ``FakeClock``
    never has to move for. ``clipjobs serve`` passes a paced one.
    """

    def __init__(
        self,
        store: EventStore,
        suno: SunoClient,
        params: GenerationParamsProvider,
        signer: WebhookSigner,
        *,
        clock: Clock,
        config: ServiceConfig | None = None,
        budget: CallBudget | None = None,
        post_processor: PostProcessor | None = None,
        metrics: Metrics | None = None,
        rng: random.Random | None = None,
        media_keeper: MediaKeeper | None = None,
        keep_config: KeepConfig | None = None,
    ) -> None:
        self.store = store
        self.params = params
        self.signer = signer
        self.clock = clock
        self.config = config or ServiceConfig()
        self.post_processor = post_processor
        #: Copies succeeded jobs' files into media storage (SPEC 10.4); None: not kept.
        self.media_keeper = media_keeper
        self.keep_config = keep_config or KeepConfig()
        self.metrics = metrics or Metrics()
        self._owns_budget = budget is None
        self.budget: CallBudget = budget or SunoBudget(
            clock=clock, metrics=self.metrics, pacing=False
        )
        #: The Suno client behind the budget: every network call waits its turn.
        self.suno = BudgetedSuno(suno, self.budget)
        self._rng = rng or random.Random()  # jitter only
        self._credits: _Credits | None = None
        self._user_turns: dict[str, _UserTurn] = {}
        self._queue: _QueueSnapshot | None = None
        self._queue_refresh: asyncio.Task[_QueueSnapshot] | None = None
        #: Called with the job's new state after every commit of this service
        #: (the workers use it to wake the sender when a job is created).
        self.on_commit: list[Callable[[JobState], None]] = []

    async def aclose(self) -> None:
        """Close the budget if this service made it; idempotent."""
        if self._owns_budget:
            await self.budget.aclose()

    # --- reading -----------------------------------------------------------

    async def get(self, job_id: str, user_id: str) -> JobState:
        """The job, if it is the user's; JobNotFound otherwise (no hint that it exists)."""
        state = await self.store.load(job_id)
        if state is None or state.user_id != user_id:
            raise JobNotFound(job_id)
        return state

    async def history(self, job_id: str, user_id: str) -> list[RecordedEvent]:
        await self.get(job_id, user_id)
        return await self.store.read(job_id)

    async def list_jobs(self, user_id: str, channel_id: str, limit: int = 20) -> list[JobState]:
        _check_channel(channel_id)
        return await self.store.list_jobs(user_id, channel_id, max(1, min(limit, 100)))

    async def watch(
        self, job_id: str, user_id: str, after_version: int, timeout: float
    ) -> JobState:
        """The job once its version exceeds ``after_version``, or as it is after ``timeout``.

        What SSE streams and ``Prefer: wait`` long-polls both wait on: woken by
        this process's commits and, on a shared database, everyone's.
        """
        state = await self.get(job_id, user_id)
        if state.version > after_version or state.done:
            return state
        await self.store.wait_for_change(job_id, after_version, timeout)
        return await self.get(job_id, user_id)

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the store answers (``/readyz``)."""
        await self.store.ping()

    def now(self) -> datetime:
        """The service clock's time: what answers are stamped with and staleness is seen from."""
        return self.clock.now()

    async def count_active(self) -> int:
        """How many jobs, everyone's, have not finished (the ``clipjobs_active_jobs`` gauge)."""
        return await self.store.count_active()

    def verify_callback_token(self, job_id: str, token: str | None) -> bool:
        """Whether ``token`` is the webhook token this server gave Suno for ``job_id``."""
        return self.signer.verify(job_id, token)

    def sign(self, text: str) -> str:
        """This server's HMAC token of ``text`` under the webhook secret (the fleet's cursors
        are signed with it, under a prefix of their own so no cursor is a webhook token).
        """
        return self.signer.token(text)

    # --- the fleet (SPEC 10.3): whoever the jobs belong to ------------------
    # The callers pin ``where`` to what the asker may see (``visible_to``).

    async def find_jobs(
        self, where: JobFilter, *, after: PageKey | None = None, limit: int = 50
    ) -> list[JobState]:
        """Jobs ``where`` selects, newest first; ``after`` continues a keyset page."""
        return await self.store.find_jobs(where, after=after, limit=limit)

    async def count_jobs(self, where: JobFilter) -> dict[Stage, int]:
        """How many jobs ``where`` selects, by stage (stages with none are left out)."""
        return await self.store.count_jobs(where)

    def changes(self) -> ChangeFeed:
        """A feed of every job changed from now on, by any process sharing the store."""
        return self.store.changes()

    async def status(self) -> ServiceStatus:
        """What ``/readyz`` and ``/metrics`` show: live workers and their leases, the Suno
        budget, who waits for it, and the last credit count seen.
        """
        workers = await self.store.workers()
        leases = await self.store.leases()
        queue = await self._queue_snapshot()
        credits = self._credits.count if self._credits is not None else None
        return ServiceStatus(
            workers, leases, queue.budget, len(queue.positions), queue.by_user, credits
        )

    # --- the queue for Suno ------------------------------------------------

    async def queue_position(self, state: JobState) -> QueuePosition | None:
        """Where a job waiting for its generate call stands; None when it is not waiting
        (not due for a send, or first in line with a turn free).

        Positions come from the store's fair queue (the order the senders of
        every process take jobs in) and ETAs from the budget, so both stay
        honest when the budget is saturated or paused. A snapshot is reused
        for ``queue_refresh_s``, so many readers cost one query a second.
        """
        if state.work is not Work.SEND or state.send_state is SendState.IN_FLIGHT:
            return None
        due = state.due_at
        now = self.clock.now()
        if due is None or due > now:
            return None  # a retry or a resend that is not due yet
        queue = await self._queue_snapshot()
        if state.job_id not in queue.positions and queue.read_at < due:
            queue = await self._queue_snapshot(fresh=True)  # it became due since: look again
        ahead = queue.positions.get(state.job_id)
        if ahead is None:
            # Due when the queue was read but not in it: a sender holds it; or further back
            # than a snapshot reads.
            if len(queue.positions) < _QUEUE_SEEN:
                return None
            ahead = len(queue.positions)
        eta = queue.budget.eta(now, ahead)
        if ahead == 0 and eta == 0:
            return None  # first in line with a turn free: it is being sent, not waiting
        return QueuePosition(ahead, eta)

    async def _queue_snapshot(self, *, fresh: bool = False) -> _QueueSnapshot:
        cached = self._queue
        if cached is not None and not fresh:
            age = (self.clock.now() - cached.read_at).total_seconds()
            if 0 <= age < self.config.queue_refresh_s:
                return cached
        if self._queue_refresh is None or self._queue_refresh.done():
            self._queue_refresh = asyncio.ensure_future(self._read_queue())
        return await asyncio.shield(self._queue_refresh)

    async def _read_queue(self) -> _QueueSnapshot:
        read_at = self.clock.now()
        due = await self.store.queue(Work.SEND, read_at, limit=_QUEUE_SEEN)
        by_user: dict[str, int] = {}
        for d in due:
            by_user[d.user_id] = by_user.get(d.user_id, 0) + 1
        positions = {d.job_id: index for index, d in enumerate(due)}
        budget = await self.budget.status()
        snapshot = _QueueSnapshot(read_at, positions, by_user, budget)
        self._queue = snapshot
        return snapshot

    # --- starting ----------------------------------------------------------

    async def start_job(self, request: JobRequest) -> StartOutcome:
        """Create a job (or find the one this idempotency key made).

        Raises InvalidRequest, JobAlreadyRunning, IdempotencyKeyReused or
        IdempotencyKeyInUse or TooManyJobs and then writes nothing. With no
        callback URL configured, or Suno out of credits, the job is created and
        failed at once (the caller gets its id).

        A key already stored when the request arrives gives back its job. A key
        that shows up only while this request is being handled (a concurrent
        request made it) is IdempotencyKeyInUse, never the channel's 409.
        """
        _check_channel(request.channel_id)
        key = request.idempotency_key
        if key is not None and not _IDEMPOTENCY_KEY.match(key):
            raise InvalidRequest(
                "Idempotency-Key must be 1-255 printable ASCII characters", field="Idempotency-Key"
            )
        fingerprint = _fingerprint(request)
        if key is not None:
            existing = await self.store.find_by_idempotency_key(request.user_id, key)
            if existing is not None:
                return self._same_request(existing, fingerprint)

        params = await self.params.params_for(
            request.channel_id, request.user_id, request.overrides
        )
        self.suno.validate(params)
        async with self._per_user(request.user_id):
            return await self._start(request, params, fingerprint)

    async def _start(
        self,
        request: JobRequest,
        params: Any,
        fingerprint: str,
        *,
        retry_of: str | None = None,
        reused: tuple[Track, ...] = (),
    ) -> StartOutcome:
        key = request.idempotency_key
        exclusive = self.config.one_job_per_channel
        if exclusive:
            holder = await self.store.find_channel_holder(request.user_id, request.channel_id)
            if holder is not None:
                raise _busy(holder, key, fingerprint)
        await self._check_caps(request.user_id)

        failure: ErrorCode | None = None
        if reused:
            pass  # a re-render calls no Suno
        elif not self.config.callback_base_url:
            failure = ErrorCode.CALLBACK_URL_NOT_CONFIGURED
        elif await self._out_of_credits():
            failure = ErrorCode.SUNO_NO_CREDITS

        now = self.clock.now()
        job_id = new_job_id(now)
        request_id = request.request_id or current_request_id.get() or new_request_id(now)
        policy = self.config.policy
        if not self.config.callback_base_url:
            # An uncertain send is resent only when a callback could have named it.
            policy = attrs.evolve(policy, resend_uncertain_after_s=0.0)
        if reused:
            policy = attrs.evolve(policy, clip_render=True)
        events: list[Event] = [
            JobAccepted(
                job_id=job_id,
                channel_id=request.channel_id,
                user_id=request.user_id,
                request_id=request_id,
                params=params,
                at=now,
                idempotency_key=key,
                fingerprint=fingerprint,
                policy=policy,
                exclusive=exclusive,
                retry_of=retry_of,
            )
        ]
        if reused:
            events.append(SunoSucceeded(Source.REUSED, reused, now))
        if failure is not None:
            events.append(JobFailed(failure.value, _MESSAGES[failure], now))
        state = fold(events)
        try:
            await self.store.append(Commit(job_id, 0, tuple(events), state))
        except ChannelBusy as exc:
            holder = await self.store.load(exc.job_id) if key is not None else None
            raise (
                _busy(holder, key, fingerprint) if holder else JobAlreadyRunning(exc.job_id)
            ) from None
        except IdempotencyConflict as exc:
            existing = await self.store.load(exc.job_id)
            if existing is None:  # pragma: no cover - the store just said it exists
                raise
            raise _busy(existing, key, fingerprint) from None
        self._after_commit(None, state, events)
        return StartOutcome(state, created=True)

    async def start_child(
        self, request: JobRequest, parent: JobState, fingerprint: str, reused: tuple[Track, ...]
    ) -> StartOutcome:
        """Start a job retrying ``parent`` with its parameters (``reused``: its tracks, for a
        re-render); the same channel rules, caps and idempotency as :meth:`start_job`.
        """
        key = request.idempotency_key
        if key is not None and not _IDEMPOTENCY_KEY.match(key):
            raise InvalidRequest(
                "Idempotency-Key must be 1-255 printable ASCII characters", field="Idempotency-Key"
            )
        if key is not None:
            existing = await self.store.find_by_idempotency_key(request.user_id, key)
            if existing is not None:
                return self._same_request(existing, fingerprint)
        async with self._per_user(request.user_id):
            return await self._start(
                request, parent.params, fingerprint, retry_of=parent.job_id, reused=reused
            )

    # --- acting on a job (SPEC 10.2; the logic is in _acting) ---------------

    async def cancel(self, job_id: str, *, by: str, reason: str | None = None) -> JobState:
        """Cancel the job (nothing is sent, polled or rendered after it); the cancelled job.

        A job already cancelled comes back as it is; JobNotFound, or
        JobAlreadyFinished when it ended otherwise. Who may cancel is the
        caller's business (the HTTP layer checks the owner).
        """
        return await _acting.cancel(self, job_id, by=by, reason=reason)

    async def retry(
        self,
        job_id: str,
        user_id: str,
        *,
        mode: str = "start",
        idempotency_key: str | None = None,
        request_id: str | None = None,
    ) -> StartOutcome:
        """Start a job retrying the user's finished job: ``start`` again, or only the ``clip``."""
        return await _acting.retry(
            self,
            job_id,
            user_id,
            mode=mode,
            idempotency_key=idempotency_key,
            request_id=request_id,
        )

    def retryable(self, state: JobState) -> bool | None:
        """GET's ``retryable``: the state's answer, and no while Suno still has 0 credits."""
        answer = state.retryable
        if answer and state.error_code == ErrorCode.SUNO_NO_CREDITS.value:
            cached = self._credits
            return not (cached is not None and cached.count <= 0)
        return answer

    @contextlib.asynccontextmanager
    async def _per_user(self, user_id: str) -> AsyncIterator[None]:
        """One runOnce at a time per user in this process, so the caps count exactly.

        Without a cap there is nothing to count and nobody waits. The lock is
        forgotten when no call holds or waits for it (``locked()`` alone is false
        for a moment between one holder and the next waiter: forgetting it then
        would let a newcomer past the waiter).
        """
        config = self.config
        if config.max_active_per_user <= 0 and config.max_starts_per_user_per_hour <= 0:
            yield
            return
        turn = self._user_turns.setdefault(user_id, _UserTurn())
        turn.users += 1
        try:
            async with turn.lock:
                yield
        finally:
            turn.users -= 1
            if turn.users == 0:
                del self._user_turns[user_id]

    async def _check_caps(self, user_id: str) -> None:
        """TooManyJobs when the user has too many running, or started too many this hour."""
        config = self.config
        if config.max_active_per_user > 0:
            active = await self.store.count_active(user_id)
            if active >= config.max_active_per_user:
                raise TooManyJobs(
                    f"{active} of your jobs are still running (at most"
                    f" {config.max_active_per_user}); start more when they finish",
                    active=active,
                    retry_after_s=config.too_many_retry_after_s,
                )
        if config.max_starts_per_user_per_hour > 0:
            since = self.clock.now() - timedelta(hours=1)
            started = await self.store.count_created(user_id, since)
            if started >= config.max_starts_per_user_per_hour:
                raise TooManyJobs(
                    f"{started} jobs started in the last hour (at most"
                    f" {config.max_starts_per_user_per_hour})",
                    active=await self.store.count_active(user_id),
                    retry_after_s=config.too_many_retry_after_s,
                )

    def _same_request(self, existing: JobState, fingerprint: str) -> StartOutcome:
        if existing.fingerprint != fingerprint:
            raise IdempotencyKeyReused(existing.job_id)
        return StartOutcome(existing, created=False)

    async def _out_of_credits(self) -> bool:
        """The pre-flight check: True only when Suno says 0 credits within the time limit.

        A positive count is trusted for ``credit_cache_s``; a 0 for only
        ``credit_zero_cache_s``, so a top-up counts at once. The check waits
        for no budget turn: with none free, the job proceeds.
        """
        cached = self._credits
        if cached is not None:
            age = (self.clock.now() - cached.at).total_seconds()
            if cached.count > 0 and age < self.config.credit_cache_s:
                return False
            if cached.count <= 0 and age < self.config.credit_zero_cache_s:
                return True
        try:
            async with asyncio.timeout(self.config.credit_check_timeout_s):
                credits = await self.suno.credits()
        except SunoNoCredits:
            credits = 0
        except (TimeoutError, SunoError) as exc:
            pipeline_log.warning("credit pre-flight skipped: %s", exc)
            return False
        self._credits = _Credits(credits, self.clock.now())
        return credits <= 0

    # --- the one way to change a job ---------------------------------------

    async def execute(
        self, job_id: str, command: Callable[[datetime], Command]
    ) -> tuple[JobState, list[Event]]:
        """Decide ``command(now)`` on the latest state and append; retried on conflict."""
        for _ in range(self.config.conflict_retries):
            state = await self.store.load(job_id)
            if state is None:
                raise JobNotFound(job_id)
            events = decide(command(self.clock.now()), state)
            if not events:
                return state, []
            new = fold(events, state)
            try:
                await self.store.append(Commit(job_id, state.version, tuple(events), new))
            except ConcurrencyError:
                await asyncio.sleep(0)
                continue
            self._after_commit(state, new, events)
            return new, events
        raise ConcurrencyError(f"job {job_id} kept changing; gave up after retries")

    def _after_commit(self, old: JobState | None, new: JobState, events: list[Event]) -> None:
        request_id = current_request_id.get() or new.request_id
        for event in events:
            name, payload = encode_event(event)
            job_log.info(
                "[%s] %s %s %s",
                new.job_id,
                new.stage.value,
                name,
                payload,
                extra={"job_id": new.job_id, "stage": new.stage.value, "request_id": request_id},
            )
        if old is None:
            self.metrics.inc("clipjobs_jobs_started_total")
            self.metrics.inc("clipjobs_stage_entered_total", stage=Stage.REQUEST_ACCEPTED.value)
        elif old.stage is not new.stage:
            self.metrics.inc("clipjobs_stage_entered_total", stage=new.stage.value)
            spent = (new.stage_since - old.stage_since).total_seconds()
            self.metrics.observe("clipjobs_stage_duration_seconds", spent, stage=old.stage.value)
        if new.done and (old is None or not old.done):
            self.metrics.inc("clipjobs_jobs_finished_total", stage=new.stage.value)
        for hook in list(self.on_commit):
            try:
                hook(new)
            except Exception:  # a listener's bug must not undo a durable commit
                pipeline_log.exception("on_commit hook %r failed", hook)

    # --- callbacks -----------------------------------------------------------

    async def handle_callback(
        self, job_id: str | None, token: str | None, payload: Mapping[str, Any]
    ) -> CallbackResult:
        """Record a Suno callback. Unauthorized (and nothing recorded) without a valid token."""
        if not job_id or not self.verify_callback_token(job_id, token):
            self.metrics.inc("clipjobs_callbacks_total", result=CallbackResult.FORGED.value)
            raise Unauthorized("invalid or missing webhook token")
        try:
            result = await self._record_callback(job_id, payload)
        except Unauthorized:
            # A valid token used for another job's task is forged all the same.
            self.metrics.inc("clipjobs_callbacks_total", result=CallbackResult.FORGED.value)
            raise
        self.metrics.inc("clipjobs_callbacks_total", result=result.value)
        return result

    async def _record_callback(self, job_id: str, payload: Mapping[str, Any]) -> CallbackResult:
        now = self.clock.now()
        raw = json.dumps(payload, ensure_ascii=False, default=str)[:65536]
        try:
            observation = self.suno.parse_callback(payload)
        except SunoProtocolError as exc:
            await self.store.record_orphan(OrphanCallback(now, None, raw, f"unreadable: {exc}"))
            return CallbackResult.UNREADABLE
        state = await self.store.find_by_task_id(observation.task_id)
        if state is None:
            state = await self.store.load(job_id)
        elif state.job_id != job_id:
            # The token is for another job than the task's: do not let it write there.
            raise Unauthorized("webhook token does not belong to this task's job")
        if state is None:
            await self.store.record_orphan(
                OrphanCallback(now, observation.task_id, raw, "no job with this task id")
            )
            return CallbackResult.ORPHAN
        _, events = await self.execute(
            state.job_id, lambda at: RecordObservation(observation, Source.CALLBACK, at)
        )
        if not events:
            return CallbackResult.DROPPED
        if all(isinstance(e, ObservationRepeated) for e in events):
            return CallbackResult.DUPLICATE
        if all(isinstance(e, LateObservation) for e in events):
            return CallbackResult.LATE
        return CallbackResult.RECORDED

    # --- the workers' steps ------------------------------------------------

    async def send(self, job_id: str, slot: Slot | None = None) -> JobState:
        """Send the generate request of a job waiting for it (STAGE_10, a retry, a resend).

        ``slot`` is the budget's turn the sender already holds (``None``: wait
        for one here). ``SunoRequestSent`` is recorded only with the turn in
        hand, right before the request leaves: a job waiting for the budget is
        still STAGE_10 and shows its place in the queue. The turn is given back
        when nothing is sent.

        A job found in flight (its sender died before Suno answered) is marked
        uncertain instead: it may have reached Suno, and sending again at once
        would spend credits twice. A callback naming the job adopts its task;
        without one it is resent once, ``resend_uncertain_after_s`` later.
        """
        state = await self._load(job_id)
        if state.stage is Stage.SUNO_REQUEST_SENT and state.send_state is SendState.IN_FLIGHT:
            await self._give_back(slot)
            reason = "the process sending it stopped before Suno answered"
            return await self._do(job_id, lambda at: MarkRequestUncertain(reason, at))
        base_url = self.config.callback_base_url
        if not base_url:
            await self._give_back(slot)
            code = ErrorCode.CALLBACK_URL_NOT_CONFIGURED
            return await self._do(job_id, lambda at: FailJob(code.value, _MESSAGES[code], at))
        if state.work is not Work.SEND:
            await self._give_back(slot)
            return state
        if slot is None:
            slot = await self.budget.acquire(Priority.GENERATE)
        try:
            state, events = await self.execute(job_id, MarkRequestSent)
        except BaseException:
            await asyncio.shield(self.budget.unused(slot))
            raise
        if not events:
            await self.budget.unused(slot)
            return state
        callback_url = self.signer.callback_url(base_url, job_id)
        params = state.params
        try:
            task_id = await run_in_slot(
                self.budget, slot, lambda: self.suno.inner.generate(params, callback_url)
            )
        except SunoNoCredits:
            code = ErrorCode.SUNO_NO_CREDITS
            self._credits = _Credits(0, self.clock.now())  # the next runOnce answers 402 at once
            return await self._do(job_id, lambda at: FailJob(code.value, _MESSAGES[code], at))
        except SunoRejected as exc:
            message = f"Suno rejected the request: {exc}"
            return await self._do(
                job_id, lambda at: FailJob(ErrorCode.SUNO_REJECTED.value, message, at)
            )
        except SunoProtocolError as exc:
            reason = f"Suno's answer was unreadable ({exc}); it may have created a task"
            return await self._do(job_id, lambda at: MarkRequestUncertain(reason, at))
        except SunoTransient as exc:
            return await self._after_transient(job_id, state, exc)
        return await self._do(job_id, lambda at: RecordTaskCreated(task_id, at))

    async def _give_back(self, slot: Slot | None) -> None:
        if slot is not None:
            await self.budget.unused(slot)

    async def _after_transient(self, job_id: str, state: JobState, exc: SunoTransient) -> JobState:
        if exc.maybe_sent:
            reason = f"no answer from Suno ({exc}); the request may have reached it"
            return await self._do(job_id, lambda at: MarkRequestUncertain(reason, at))
        if state.send_attempts >= self.config.send_max_attempts:
            message = f"Suno unavailable after {state.send_attempts} attempts: {exc}"
            return await self._do(
                job_id, lambda at: FailJob(ErrorCode.SUNO_UNAVAILABLE.value, message, at)
            )
        delay = min(
            self.config.send_backoff_max_s,
            self.config.send_backoff_s * 2 ** (state.send_attempts - 1),
        )
        delay *= 0.5 + self._rng.random()  # full jitter around the backoff
        error = str(exc)
        return await self._do(
            job_id,
            lambda at: ScheduleRetry(error, at + timedelta(seconds=delay), at),
        )

    async def poll(self, job_id: str, slot: Slot | None = None) -> JobState:
        """Ask Suno about the job's task and record what it says (the heartbeat).

        ``slot``: the budget's turn the poller holds (``None``: wait for one).
        Suno errors propagate: the caller keeps its lease, which spaces the retries.
        """
        state = await self._load(job_id)
        if state.task_id is None or state.done:
            await self._give_back(slot)
            return state
        task_id = state.task_id
        if slot is None:
            slot = await self.budget.acquire(Priority.POLL)
        observation = await run_in_slot(
            self.budget, slot, lambda: self.suno.inner.record_info(task_id)
        )
        return await self._do(job_id, lambda at: RecordObservation(observation, Source.POLL, at))

    async def sweep(self, job_id: str) -> JobState:
        """Time the job out if its deadline has passed (exactly once)."""
        return await self._do(job_id, TimeOut)

    async def render(self, job_id: str) -> JobState:
        """Post-process a succeeded job into a clip (STAGE_60 → 70, or 90)."""
        processor = self.post_processor
        if processor is None:
            raise PostProcessError(ErrorCode.CLIP_FAILED.value, "no post-processor is configured")
        state, _ = await self.execute(job_id, StartClip)
        if state.stage is not Stage.CLIP_PROCESSING:
            return state

        async def report(step: ClipStep) -> None:
            await self.execute(job_id, lambda at: RecordClipStep(step, at))

        try:
            async with asyncio.timeout(self.config.render_timeout_s):
                made = await _render_unless_cancelled(self, processor.process(state, report), state)
        except _RenderCancelled:
            pipeline_log.info("[%s] render stopped: the job was cancelled", job_id)
            return await self._load(job_id)
        except PostProcessError as exc:
            code, message = exc.code, str(exc)
            return await self._do(job_id, lambda at: FailJob(code, message, at))
        except TimeoutError:
            message = f"post-processing took longer than {self.config.render_timeout_s:g} s"
            return await self._do(
                job_id, lambda at: FailJob(ErrorCode.CLIP_RENDER_TIMEOUT.value, message, at)
            )
        clip = made if isinstance(made, RenderedClip) else RenderedClip(made)
        return await self._do(
            job_id, lambda at: FinishClip(clip.url, at, clip.captions_url, clip.note)
        )

    async def keep_media(self, job_id: str) -> JobState:
        """Copy the job's tracks into media storage (``Work.MEDIA``): ``keep_media``."""
        if self.media_keeper is None:
            raise PostProcessError(ErrorCode.CLIP_FAILED.value, "no media storage is configured")
        return await keep_media(self, self.media_keeper, self.keep_config, job_id)

    async def load(self, job_id: str) -> JobState:
        """The job whoever it belongs to (workers, an admin's reads); JobNotFound if none."""
        return await self._load(job_id)

    async def _load(self, job_id: str) -> JobState:
        state = await self.store.load(job_id)
        if state is None:
            raise JobNotFound(job_id)
        return state

    async def _do(self, job_id: str, command: Callable[[datetime], Command]) -> JobState:
        state, _ = await self.execute(job_id, command)
        return state


class _RenderCancelled(Exception):
    """The job was cancelled while it rendered: the render was stopped."""


async def _render_unless_cancelled(
    service: JobService, render: Awaitable[str | RenderedClip], state: JobState
) -> str | RenderedClip:
    """Run the render, stopping it (the processor kills ffmpeg, removes its partial files)
    as soon as the job is cancelled.
    """
    task = asyncio.ensure_future(render)
    watch = asyncio.ensure_future(_acting.watch_for_cancel(service, state))
    try:
        await asyncio.wait((task, watch), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for fut in (task, watch):
            if not fut.done():
                fut.cancel()
        await asyncio.gather(task, watch, return_exceptions=True)
    if not task.cancelled():
        return task.result()  # done (or raised) before any cancel was seen
    raise _RenderCancelled


def _busy(holder: JobState, key: str | None, fingerprint: str) -> ClipjobsError:
    """Why a job cannot be started while ``holder`` exists: its key's concurrent twin, or busy."""
    if key is None or holder.idempotency_key != key:
        return JobAlreadyRunning(holder.job_id)
    if holder.fingerprint != fingerprint:
        return IdempotencyKeyReused(holder.job_id)
    return IdempotencyKeyInUse(holder.job_id)


def _check_channel(channel_id: str) -> None:
    if not _CHANNEL_ID.match(channel_id):
        raise InvalidRequest(
            "channelId must be 1-128 characters of letters, digits and _.:@-", field="channelId"
        )


def _fingerprint(request: JobRequest) -> str:
    body = json.dumps(
        {"channel": request.channel_id, "params": asdict(request.overrides)}, sort_keys=True
    )
    return hashlib.sha256(body.encode()).hexdigest()[:32]
