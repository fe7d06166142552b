"""``evolve`` and ``fold``: a job's log into a :class:`JobState`, with table look-ups.

The fold runs on every append and every history read, so it is written for
speed: one mutable accumulator per fold, one dict look-up per event for its
handler and one for the stage graph, and a single frozen ``JobState`` at the
end. It builds no ``transitions`` machine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import attrs

from ._machine import TABLE
from .errors import InvalidTransition
from .events import (
    ClipProcessingStarted,
    ClipReady,
    ClipStep,
    ClipStepReached,
    Event,
    GenerationParams,
    JobAccepted,
    JobFailed,
    JobPolicy,
    JobTimedOut,
    LateObservation,
    ProviderStatus,
    Source,
    SunoProgressObserved,
    SunoRequestRetryScheduled,
    SunoRequestSent,
    SunoRequestUncertain,
    SunoSucceeded,
    SunoTaskCreated,
    Track,
)
from .stages import Stage
from .state import TIMEOUT_ERROR_CODE, JobState, SendState

__all__ = ["evolve", "fold"]

_FIELDS = tuple(a.name for a in attrs.fields(JobState))


class _Acc:
    """A JobState under construction (mutable, private to one fold)."""

    __slots__ = _FIELDS
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
    stage_since: datetime
    task_id: str | None
    provider_status: ProviderStatus | None
    tracks: tuple[Track, ...]
    error_code: str | None
    error_message: str | None
    last_observed_at: datetime | None
    last_observation_source: Source | None
    observations: int
    late_observations: int
    send_attempts: int
    send_state: SendState
    retry_at: datetime | None
    clip_step: ClipStep | None
    clip_url: str | None

    def freeze(self) -> JobState:
        return JobState(*[getattr(self, name) for name in _FIELDS])


def _move(acc: _Acc, trigger: str, event: Event) -> None:
    steps = TABLE.get((acc.stage, trigger))
    if steps:
        for step in steps:
            if not step.requires or acc.policy.clip_render:
                if step.dest is not acc.stage:
                    acc.stage = step.dest
                    acc.stage_since = event.at
                return
    raise InvalidTransition(
        f"{type(event).__name__} is not allowed in {acc.stage} "
        f"(job {acc.job_id}, version {acc.version})"
    )


def _accepted(acc: _Acc, e: JobAccepted) -> None:
    raise InvalidTransition(f"JobAccepted for an existing job {e.job_id}")


def _request_sent(acc: _Acc, e: SunoRequestSent) -> None:
    _move(acc, "send_request" if e.attempt <= 1 else "resend_request", e)
    acc.send_attempts = e.attempt
    acc.send_state = SendState.IN_FLIGHT
    acc.retry_at = None


def _retry_scheduled(acc: _Acc, e: SunoRequestRetryScheduled) -> None:
    _move(acc, "note_request", e)
    acc.send_state = SendState.RETRY_WAIT
    acc.retry_at = e.retry_at
    acc.error_message = e.error


def _uncertain(acc: _Acc, e: SunoRequestUncertain) -> None:
    _move(acc, "note_request", e)
    acc.send_state = SendState.UNCERTAIN
    acc.retry_at = None


def _task_created(acc: _Acc, e: SunoTaskCreated) -> None:
    _move(acc, "create_task", e)
    acc.task_id = e.task_id
    acc.send_state = SendState.ACKNOWLEDGED
    acc.retry_at = None
    acc.error_message = None


def _observe(acc: _Acc, e: SunoProgressObserved | SunoSucceeded) -> None:
    acc.last_observed_at = e.at
    acc.last_observation_source = e.source
    acc.observations += 1


def _progress(acc: _Acc, e: SunoProgressObserved) -> None:
    _move(acc, "observe_progress", e)
    _observe(acc, e)
    current = acc.provider_status
    # Out-of-order callbacks must not make the provider status go backwards.
    if current is None or _RANK[e.status] >= _RANK[current]:
        acc.provider_status = e.status
    if e.tracks:
        acc.tracks = e.tracks


def _succeeded(acc: _Acc, e: SunoSucceeded) -> None:
    _move(acc, "succeed", e)
    _observe(acc, e)
    acc.provider_status = _SUCCESS
    acc.tracks = e.tracks


def _failed(acc: _Acc, e: JobFailed) -> None:
    _move(acc, "fail", e)
    acc.error_code = e.error_code
    acc.error_message = e.message


def _timed_out(acc: _Acc, e: JobTimedOut) -> None:
    _move(acc, "time_out", e)
    acc.error_code = TIMEOUT_ERROR_CODE
    acc.error_message = None


def _late(acc: _Acc, e: LateObservation) -> None:
    acc.late_observations += 1


def _clip_started(acc: _Acc, e: ClipProcessingStarted) -> None:
    _move(acc, "start_clip", e)


def _clip_step(acc: _Acc, e: ClipStepReached) -> None:
    _move(acc, "clip_step", e)
    acc.clip_step = e.step


def _clip_ready(acc: _Acc, e: ClipReady) -> None:
    _move(acc, "clip_ready", e)
    acc.clip_url = e.clip_url
    acc.clip_step = None


_PS = ProviderStatus
_SUCCESS = _PS.SUCCESS
_RANK = {
    _PS.PENDING: 0,
    _PS.TEXT_SUCCESS: 1,
    _PS.FIRST_SUCCESS: 2,
    _PS.SUCCESS: 3,
    _PS.CREATE_TASK_FAILED: 3,
    _PS.GENERATE_AUDIO_FAILED: 3,
    _PS.CALLBACK_EXCEPTION: 3,
    _PS.SENSITIVE_WORD_ERROR: 3,
}

_HANDLERS: dict[type[Any], Callable[[_Acc, Any], None]] = {
    JobAccepted: _accepted,
    SunoRequestSent: _request_sent,
    SunoRequestRetryScheduled: _retry_scheduled,
    SunoRequestUncertain: _uncertain,
    SunoTaskCreated: _task_created,
    SunoProgressObserved: _progress,
    SunoSucceeded: _succeeded,
    JobFailed: _failed,
    JobTimedOut: _timed_out,
    LateObservation: _late,
    ClipProcessingStarted: _clip_started,
    ClipStepReached: _clip_step,
    ClipReady: _clip_ready,
}


def _start(e: JobAccepted) -> _Acc:
    acc = _Acc()
    for a in attrs.fields(JobState):
        if a.default is not attrs.NOTHING:
            setattr(acc, a.name, a.default)
    acc.job_id = e.job_id
    acc.channel_id = e.channel_id
    acc.user_id = e.user_id
    acc.request_id = e.request_id
    acc.params = e.params
    acc.policy = e.policy
    acc.idempotency_key = e.idempotency_key
    acc.fingerprint = e.fingerprint
    acc.exclusive = e.exclusive
    acc.stage = Stage.REQUEST_ACCEPTED
    acc.version = 1
    acc.created_at = e.at
    acc.updated_at = e.at
    acc.stage_since = e.at
    return acc


def _thaw(state: JobState) -> _Acc:
    acc = _Acc()
    for name in _FIELDS:
        setattr(acc, name, getattr(state, name))
    return acc


def fold(events: Iterable[Event], state: JobState | None = None) -> JobState:
    """Apply ``events`` in order to ``state`` (``None``: a new job's log).

    Raises :class:`~clipjobs.errors.InvalidTransition` when the log breaks the
    stage graph, or does not start with ``JobAccepted``.
    """
    acc = None if state is None else _thaw(state)
    handlers = _HANDLERS
    for event in events:
        if acc is None:
            if type(event) is not JobAccepted:
                raise InvalidTransition(
                    f"a job's log starts with JobAccepted, not {type(event).__name__}"
                )
            acc = _start(event)
            continue
        handlers[type(event)](acc, event)
        acc.version += 1
        if event.at > acc.updated_at:
            acc.updated_at = event.at
    if acc is None:
        raise InvalidTransition("an empty log has no job")
    return acc.freeze()


def evolve(state: JobState | None, event: Event) -> JobState:
    """The state after one more event (the Decider's ``evolve``)."""
    return fold((event,), state)
