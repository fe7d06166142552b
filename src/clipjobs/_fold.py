"""``evolve`` and ``fold``: a job's log into a :class:`JobState`, with table look-ups.

The fold runs on every append and every history read, so it is written for
speed: the accumulator is a plain list indexed by field position, each event
costs one dict look-up for its destination stage (from tables compiled once
from the machine) and one for its handler, and a single ``JobState`` tuple is
built at the end. It builds no ``transitions`` machine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ._machine import TABLE
from .errors import InvalidTransition
from .events import (
    ClipProcessingStarted,
    ClipReady,
    ClipStepReached,
    Event,
    JobAccepted,
    JobFailed,
    JobTimedOut,
    LateObservation,
    ProviderStatus,
    SunoProgressObserved,
    SunoRequestRetryScheduled,
    SunoRequestSent,
    SunoRequestUncertain,
    SunoSucceeded,
    SunoTaskCreated,
)
from .stages import Stage
from .state import TIMEOUT_ERROR_CODE, JobState, SendState

__all__ = ["evolve", "fold"]

_F = {name: index for index, name in enumerate(JobState._fields)}
_STAGE = _F["stage"]
_VERSION = _F["version"]
_UPDATED = _F["updated_at"]
_SINCE = _F["stage_since"]
_POLICY = _F["policy"]
_TASK = _F["task_id"]
_STATUS = _F["provider_status"]
_TRACKS = _F["tracks"]
_ERR_CODE = _F["error_code"]
_ERR_MSG = _F["error_message"]
_OBSERVED = _F["last_observed_at"]
_OBS_SOURCE = _F["last_observation_source"]
_OBSERVATIONS = _F["observations"]
_LATE = _F["late_observations"]
_ATTEMPTS = _F["send_attempts"]
_SEND = _F["send_state"]
_RETRY_AT = _F["retry_at"]
_CLIP_STEP = _F["clip_step"]
_CLIP_URL = _F["clip_url"]

#: The machine's triggers each event type may fire.
_TRIGGERS: dict[type[Any], tuple[str, ...]] = {
    SunoRequestSent: ("send_request", "resend_request"),
    SunoRequestRetryScheduled: ("note_request",),
    SunoRequestUncertain: ("note_request",),
    SunoTaskCreated: ("create_task",),
    SunoProgressObserved: ("observe_progress",),
    SunoSucceeded: ("succeed",),
    JobFailed: ("fail",),
    JobTimedOut: ("time_out",),
    ClipProcessingStarted: ("start_clip",),
    ClipStepReached: ("clip_step",),
    ClipReady: ("clip_ready",),
}


def _compile() -> dict[type[Any], tuple[dict[Stage, Stage], dict[Stage, Stage]]]:
    """Per event type: ``stage -> destination`` without and with ``clip_render``."""
    nexts: dict[type[Any], tuple[dict[Stage, Stage], dict[Stage, Stage]]] = {}
    for cls, triggers in _TRIGGERS.items():
        plain: dict[Stage, Stage] = {}
        clip: dict[Stage, Stage] = {}
        for (source, trigger), steps in TABLE.items():
            if trigger not in triggers:
                continue
            for step in steps:
                clip.setdefault(source, step.dest)
                if not step.requires:
                    plain.setdefault(source, step.dest)
        nexts[cls] = (plain, clip)
    # A late observation is valid in every stage and changes none.
    everywhere = {stage: stage for stage in Stage}
    nexts[LateObservation] = (everywhere, everywhere)
    return nexts


_NEXT = _compile()


def _request_sent(acc: list[Any], e: SunoRequestSent) -> None:
    acc[_ATTEMPTS] = e.attempt
    acc[_SEND] = SendState.IN_FLIGHT
    acc[_RETRY_AT] = None


def _retry_scheduled(acc: list[Any], e: SunoRequestRetryScheduled) -> None:
    acc[_SEND] = SendState.RETRY_WAIT
    acc[_RETRY_AT] = e.retry_at
    acc[_ERR_MSG] = e.error


def _uncertain(acc: list[Any], e: SunoRequestUncertain) -> None:
    acc[_SEND] = SendState.UNCERTAIN
    acc[_RETRY_AT] = None


def _task_created(acc: list[Any], e: SunoTaskCreated) -> None:
    acc[_TASK] = e.task_id
    acc[_SEND] = SendState.ACKNOWLEDGED
    acc[_RETRY_AT] = None
    acc[_ERR_MSG] = None


_RANK = dict.fromkeys(ProviderStatus, 3) | {
    ProviderStatus.PENDING: 0,
    ProviderStatus.TEXT_SUCCESS: 1,
    ProviderStatus.FIRST_SUCCESS: 2,
}


def _progress(acc: list[Any], e: SunoProgressObserved) -> None:
    """A marker: ``fold`` handles progress inline (see there)."""
    raise AssertionError("handled inline by fold")  # pragma: no cover


def _succeeded(acc: list[Any], e: SunoSucceeded) -> None:
    acc[_OBSERVED] = e.at
    acc[_OBS_SOURCE] = e.source
    acc[_OBSERVATIONS] += 1
    acc[_STATUS] = ProviderStatus.SUCCESS
    acc[_TRACKS] = e.tracks


def _failed(acc: list[Any], e: JobFailed) -> None:
    acc[_ERR_CODE] = e.error_code
    acc[_ERR_MSG] = e.message


def _timed_out(acc: list[Any], e: JobTimedOut) -> None:
    acc[_ERR_CODE] = TIMEOUT_ERROR_CODE
    acc[_ERR_MSG] = None


def _late(acc: list[Any], e: LateObservation) -> None:
    acc[_LATE] += 1


def _clip_step(acc: list[Any], e: ClipStepReached) -> None:
    acc[_CLIP_STEP] = e.step


def _clip_ready(acc: list[Any], e: ClipReady) -> None:
    acc[_CLIP_URL] = e.clip_url
    acc[_CLIP_STEP] = None


def _nothing(acc: list[Any], e: Any) -> None:
    pass


_HANDLERS: dict[type[Any], Callable[[list[Any], Any], None]] = {
    SunoRequestSent: _request_sent,
    SunoRequestRetryScheduled: _retry_scheduled,
    SunoRequestUncertain: _uncertain,
    SunoTaskCreated: _task_created,
    SunoProgressObserved: _progress,
    SunoSucceeded: _succeeded,
    JobFailed: _failed,
    JobTimedOut: _timed_out,
    LateObservation: _late,
    ClipProcessingStarted: _nothing,
    ClipStepReached: _clip_step,
    ClipReady: _clip_ready,
}

#: Per ``clip_render`` flag: event type -> (stage -> destination, handler).
_PLAN: tuple[dict[type[Any], tuple[dict[Stage, Stage], Callable[[list[Any], Any], None]]], ...] = (
    {cls: (tables[0], _HANDLERS[cls]) for cls, tables in _NEXT.items()},
    {cls: (tables[1], _HANDLERS[cls]) for cls, tables in _NEXT.items()},
)

_DEFAULTS = JobState._field_defaults
_FIRST_DEFAULT = len(JobState._fields) - len(_DEFAULTS)
_DEFAULT_TAIL = [_DEFAULTS[name] for name in JobState._fields[_FIRST_DEFAULT:]]


def _start(e: JobAccepted) -> list[Any]:
    # One list literal (not head + defaults): fewer allocations, less GC work per fold.
    at = e.at
    return [
        e.job_id,
        e.channel_id,
        e.user_id,
        e.request_id,
        e.params,
        e.policy,
        e.idempotency_key,
        e.fingerprint,
        e.exclusive,
        Stage.REQUEST_ACCEPTED,
        1,
        at,
        at,
        at,
        *_DEFAULT_TAIL,
    ]


def fold(events: Iterable[Event], state: JobState | None = None) -> JobState:
    """Apply ``events`` in order to ``state`` (``None``: a new job's log).

    Raises :class:`~clipjobs.errors.InvalidTransition` when the log breaks the
    stage graph, or does not start with ``JobAccepted``.
    """
    it: Iterator[Any] = iter(events)  # dispatch is by type(event), not by narrowing
    if state is None:
        first = next(it, None)
        if type(first) is not JobAccepted:
            found = "an empty log" if first is None else type(first).__name__
            raise InvalidTransition(f"a job's log starts with JobAccepted, not {found}")
        acc = _start(first)
    else:
        acc = list(state)
    plan = _PLAN[1 if acc[_POLICY].clip_render else 0]
    stage_i, since_i, version_i, updated_i = _STAGE, _SINCE, _VERSION, _UPDATED
    observed_i, source_i, count_i, status_i = _OBSERVED, _OBS_SOURCE, _OBSERVATIONS, _STATUS
    progress, rank = _progress, _RANK
    for event in it:
        try:
            nexts, handler = plan[type(event)]
            dest = nexts[acc[stage_i]]
        except KeyError:
            raise InvalidTransition(
                f"{type(event).__name__} is not allowed in {acc[stage_i]} "
                f"(job {acc[0]}, version {acc[version_i]})"
            ) from None
        at = event.at
        if dest is not acc[stage_i]:
            acc[stage_i] = dest
            acc[since_i] = at
        if handler is not progress:
            handler(acc, event)
        else:  # inlined: every poll is one of these, so this is most of a long log
            acc[observed_i] = at
            acc[source_i] = event.source
            acc[count_i] += 1
            status, current = event.status, acc[status_i]
            # Out-of-order callbacks must not make the provider status go backwards.
            if current is None or rank[status] >= rank[current]:
                acc[status_i] = status
            if event.tracks:
                acc[_TRACKS] = event.tracks
        acc[version_i] += 1
        if at > acc[updated_i]:
            acc[updated_i] = at
    return JobState._make(acc)


def evolve(state: JobState | None, event: Event) -> JobState:
    """The state after one more event (the Decider's ``evolve``)."""
    return fold((event,), state)
