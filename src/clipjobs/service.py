"""``JobService``: the application layer. It talks only to the ports.

Every change follows one path: load the projection, ``decide`` with a
timestamped command, ``fold`` the new events onto the state, append with the
expected version, and on a ``ConcurrencyError`` start over from the load.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from attrs import asdict, field, frozen

from ._decide import decide
from ._fold import fold
from .codec import encode_event
from .commands import (
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
from .errors import (
    ChannelBusy,
    ConcurrencyError,
    IdempotencyConflict,
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
)
from .events import ClipStep, Event, JobAccepted, JobFailed, JobPolicy, Source
from .ids import new_job_id, new_request_id
from .logs import current_request_id, job_log, pipeline_log
from .metrics import Metrics
from .ports import (
    Clock,
    Commit,
    EventStore,
    GenerationParamsProvider,
    OrphanCallback,
    ParamOverrides,
    PostProcessor,
    RecordedEvent,
    RenderedClip,
    SunoClient,
)
from .stages import Stage
from .state import JobState, SendState
from .webhook import WebhookSigner

__all__ = [
    "CallbackResult",
    "ErrorCode",
    "JobRequest",
    "JobService",
    "ServiceConfig",
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
    credit_cache_s: float = 30.0
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


class CallbackResult(StrEnum):
    RECORDED = "recorded"
    DUPLICATE = "duplicate"
    LATE = "late"
    ORPHAN = "orphan"
    FORGED = "forged"
    UNREADABLE = "unreadable"


class JobService:
    """Starts jobs, records what Suno says, and does each worker's one step."""

    def __init__(
        self,
        store: EventStore,
        suno: SunoClient,
        params: GenerationParamsProvider,
        signer: WebhookSigner,
        *,
        clock: Clock,
        config: ServiceConfig | None = None,
        post_processor: PostProcessor | None = None,
        metrics: Metrics | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.suno = suno
        self.params = params
        self.signer = signer
        self.clock = clock
        self.config = config or ServiceConfig()
        self.post_processor = post_processor
        self.metrics = metrics or Metrics()
        self._rng = rng or random.Random()  # jitter only
        self._credits: tuple[float, int] | None = None
        #: Called with the job's new state after every commit of this service
        #: (the workers use it to wake the sender when a job is created).
        self.on_commit: list[Callable[[JobState], None]] = []

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

    async def wait_for_change(
        self, job_id: str, user_id: str, version: int, timeout: float
    ) -> JobState:
        """The job once its version exceeds ``version``, or as it is after ``timeout``."""
        state = await self.get(job_id, user_id)
        if state.version > version or state.done:
            return state
        await self.store.wait_for_change(job_id, version, timeout)
        return await self.get(job_id, user_id)

    # --- starting ----------------------------------------------------------

    async def start_job(self, request: JobRequest) -> StartOutcome:
        """Create a job (or find the one this idempotency key made).

        Raises InvalidRequest, JobAlreadyRunning or IdempotencyKeyReused and
        then writes nothing. With no callback URL configured, or Suno out of
        credits, the job is created and failed at once (the caller gets its id).
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
        exclusive = self.config.one_job_per_channel
        if exclusive:
            holder = await self.store.find_channel_holder(request.user_id, request.channel_id)
            if holder is not None:
                raise JobAlreadyRunning(holder.job_id)

        failure: ErrorCode | None = None
        if not self.config.callback_base_url:
            failure = ErrorCode.CALLBACK_URL_NOT_CONFIGURED
        elif await self._out_of_credits():
            failure = ErrorCode.SUNO_NO_CREDITS

        now = self.clock.now()
        job_id = new_job_id(now)
        request_id = request.request_id or current_request_id.get() or new_request_id(now)
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
                policy=self.config.policy,
                exclusive=exclusive,
            )
        ]
        if failure is not None:
            events.append(JobFailed(failure.value, _MESSAGES[failure], now))
        state = fold(events)
        try:
            await self.store.append(Commit(job_id, 0, tuple(events), state))
        except ChannelBusy as exc:
            raise JobAlreadyRunning(exc.job_id) from None
        except IdempotencyConflict as exc:
            existing = await self.store.load(exc.job_id)
            if existing is None:  # pragma: no cover - the store just said it exists
                raise
            return self._same_request(existing, fingerprint)
        self._after_commit(None, state, events)
        return StartOutcome(state, created=True)

    def _same_request(self, existing: JobState, fingerprint: str) -> StartOutcome:
        if existing.fingerprint != fingerprint:
            raise IdempotencyKeyReused(existing.job_id)
        return StartOutcome(existing, created=False)

    async def _out_of_credits(self) -> bool:
        """The pre-flight check: True only when Suno says 0 credits within the time limit."""
        cached = self._credits
        if cached is not None and time.monotonic() - cached[0] < self.config.credit_cache_s:
            return cached[1] <= 0
        try:
            async with asyncio.timeout(self.config.credit_check_timeout_s):
                credits = await self.suno.credits()
        except SunoNoCredits:
            credits = 0
        except (TimeoutError, SunoError) as exc:
            pipeline_log.warning("credit pre-flight skipped: %s", exc)
            return False
        self._credits = (time.monotonic(), credits)
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
        if not job_id or not self.signer.verify(job_id, token):
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
            return CallbackResult.DUPLICATE
        if all(type(e).__name__ == "LateObservation" for e in events):
            return CallbackResult.LATE
        return CallbackResult.RECORDED

    # --- the workers' steps ------------------------------------------------

    async def send(self, job_id: str) -> JobState:
        """Send the generate request of a job in STAGE_10 (or due for a retry).

        A job found in flight (its sender died before Suno answered) is marked
        uncertain instead: it may have reached Suno, and sending again would
        spend credits twice. A callback naming the job can still adopt its task.
        """
        state = await self.store.load(job_id)
        if state is None:
            raise JobNotFound(job_id)
        if state.stage is Stage.SUNO_REQUEST_SENT and state.send_state is SendState.IN_FLIGHT:
            state, _ = await self.execute(
                job_id,
                lambda at: MarkRequestUncertain(
                    "the process sending it stopped before Suno answered", at
                ),
            )
            return state
        base_url = self.config.callback_base_url
        if not base_url:
            code = ErrorCode.CALLBACK_URL_NOT_CONFIGURED
            state, _ = await self.execute(
                job_id, lambda at: FailJob(code.value, _MESSAGES[code], at)
            )
            return state
        state, events = await self.execute(job_id, MarkRequestSent)
        if not events:
            return state
        callback_url = self.signer.callback_url(base_url, job_id)
        try:
            task_id = await self.suno.generate(state.params, callback_url)
        except SunoNoCredits:
            code = ErrorCode.SUNO_NO_CREDITS
            self._credits = (time.monotonic(), 0)
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

    async def poll(self, job_id: str) -> JobState:
        """Ask Suno about the job's task and record what it says (the heartbeat).

        Suno errors propagate: the caller keeps its lease, which spaces the retries.
        """
        state = await self.store.load(job_id)
        if state is None:
            raise JobNotFound(job_id)
        if state.task_id is None or state.done:
            return state
        observation = await self.suno.record_info(state.task_id)
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
                made = await processor.process(state, report)
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

    async def _do(self, job_id: str, command: Callable[[datetime], Command]) -> JobState:
        state, _ = await self.execute(job_id, command)
        return state


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
