"""``evolve`` and ``fold``: a job's log into a :class:`JobState`, with table look-ups.

The fold runs on every append and every history read, so it is written for
speed: every field is a local variable while the log is read, each event costs
one dict look-up for its destination stage (in the current stage's row of a
table compiled once from the machine) and a few identity tests for its type,
and a single ``JobState`` tuple is built at the end. It builds no
``transitions`` machine.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
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
    Track,
)
from .stages import Stage
from .state import TIMEOUT_ERROR_CODE, JobState, SendState

__all__ = ["evolve", "fold"]

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

_Row = dict[type[Any], Stage]


def _compile() -> tuple[dict[Stage, _Row], dict[Stage, _Row]]:
    """Per ``clip_render`` flag: ``stage -> {event type -> destination}``.

    Keyed by stage first so the fold keeps the current stage's row in a local
    and pays one dict look-up (by type, a pointer hash) per event; it fetches
    a new row only when the stage changes.
    """
    plain: dict[Stage, _Row] = {stage: {} for stage in Stage}
    clip: dict[Stage, _Row] = {stage: {} for stage in Stage}
    for cls, triggers in _TRIGGERS.items():
        for (source, trigger), steps in TABLE.items():
            if trigger not in triggers:
                continue
            for step in steps:
                clip[source].setdefault(cls, step.dest)
                if not step.requires:
                    plain[source].setdefault(cls, step.dest)
    # A late observation is valid in every stage and changes none.
    for stage in Stage:
        plain[stage][LateObservation] = stage
        clip[stage][LateObservation] = stage
    return plain, clip


_ROWS = _compile()

#: Provider statuses never go backwards (out-of-order callbacks): a status is
#: taken when its rank is at least the current one's; no status ranks below all.
_RANK = dict.fromkeys(ProviderStatus, 3) | {
    ProviderStatus.PENDING: 0,
    ProviderStatus.TEXT_SUCCESS: 1,
    ProviderStatus.FIRST_SUCCESS: 2,
}
#: The same rule as one look-up and one set test: ``status -> current statuses it replaces``.
_REPLACES: dict[ProviderStatus, frozenset[ProviderStatus | None]] = {
    status: frozenset([None, *(c for c in ProviderStatus if _RANK[c] <= _RANK[status])])
    for status in ProviderStatus
}

_new = tuple.__new__
_REQUEST_ACCEPTED = Stage.REQUEST_ACCEPTED
_NOT_SENT = SendState.NOT_SENT
_IN_FLIGHT = SendState.IN_FLIGHT
_RETRY_WAIT = SendState.RETRY_WAIT
_UNCERTAIN = SendState.UNCERTAIN
_ACKNOWLEDGED = SendState.ACKNOWLEDGED
_SUCCESS = ProviderStatus.SUCCESS
_NO_TRACKS: tuple[Track, ...] = ()
#: The order ``fold`` builds its tuple in; checked against ``JobState`` at import.
_FIELDS = (
    "job_id",
    "channel_id",
    "user_id",
    "request_id",
    "params",
    "policy",
    "idempotency_key",
    "fingerprint",
    "exclusive",
    "stage",
    "version",
    "created_at",
    "updated_at",
    "stage_since",
    "task_id",
    "provider_status",
    "tracks",
    "error_code",
    "error_message",
    "last_observed_at",
    "last_observation_source",
    "observations",
    "late_observations",
    "send_attempts",
    "send_state",
    "retry_at",
    "clip_step",
    "clip_url",
    "captions_url",
)
#: The defaults ``fold`` starts a new job with; checked against ``JobState`` at import.
_DEFAULTS = {
    "task_id": None,
    "provider_status": None,
    "tracks": _NO_TRACKS,
    "error_code": None,
    "error_message": None,
    "last_observed_at": None,
    "last_observation_source": None,
    "observations": 0,
    "late_observations": 0,
    "send_attempts": 0,
    "send_state": _NOT_SENT,
    "retry_at": None,
    "clip_step": None,
    "clip_url": None,
    "captions_url": None,
}
if JobState._fields != _FIELDS or JobState._field_defaults != _DEFAULTS:  # pragma: no cover
    raise RuntimeError("JobState's fields changed: update clipjobs._fold.fold to match")


def fold(events: Iterable[Event], state: JobState | None = None) -> JobState:
    """Apply ``events`` in order to ``state`` (``None``: a new job's log).

    Raises :class:`~clipjobs.errors.InvalidTransition` when the log breaks the
    stage graph, or does not start with ``JobAccepted``.

    Written for CPython's speed, not for looks: every field of the state is a
    local variable while the log is read (a local is the cheapest thing the
    interpreter reads or writes), event types are told apart by identity, the
    most frequent (a progress observation) first, and one tuple is built at
    the end. ``tests/core`` checks it against stepwise evolution and the
    decider; ``bench/bench_fold.py`` against a ``transitions`` machine.
    """
    it: Iterator[Any] = iter(events)  # dispatch is by type(event), not by narrowing
    if state is None:
        first = next(it, None)
        if type(first) is not JobAccepted:
            found = "an empty log" if first is None else type(first).__name__
            raise InvalidTransition(f"a job's log starts with JobAccepted, not {found}")
        job_id = first.job_id
        channel_id = first.channel_id
        user_id = first.user_id
        request_id = first.request_id
        params = first.params
        policy = first.policy
        idempotency_key = first.idempotency_key
        fingerprint = first.fingerprint
        exclusive = first.exclusive
        stage = _REQUEST_ACCEPTED
        version = 1
        created_at = updated_at = stage_since = first.at
        task_id = None
        provider_status: ProviderStatus | None = None
        tracks = _NO_TRACKS
        error_code = error_message = None
        last_observed_at = None
        last_observation_source = None
        observations = late_observations = send_attempts = 0
        send_state = _NOT_SENT
        retry_at = clip_step = clip_url = captions_url = None
    else:
        (
            job_id,
            channel_id,
            user_id,
            request_id,
            params,
            policy,
            idempotency_key,
            fingerprint,
            exclusive,
            stage,
            version,
            created_at,
            updated_at,
            stage_since,
            task_id,
            provider_status,
            tracks,
            error_code,
            error_message,
            last_observed_at,
            last_observation_source,
            observations,
            late_observations,
            send_attempts,
            send_state,
            retry_at,
            clip_step,
            clip_url,
            captions_url,
        ) = state
    rows = _ROWS[1 if policy.clip_render else 0]
    row = rows[stage]
    replaces = _REPLACES
    for event in it:
        cls = type(event)
        try:
            dest = row[cls]
        except KeyError:
            raise InvalidTransition(
                f"{cls.__name__} is not allowed in {stage} (job {job_id}, version {version})"
            ) from None
        at = event.at
        if dest is not stage:
            stage = dest
            stage_since = at
            row = rows[dest]
        version += 1
        if at > updated_at:
            updated_at = at
        if cls is SunoProgressObserved:  # every poll is one: most of a long log
            last_observed_at = at
            last_observation_source = event.source
            observations += 1
            status = event.status
            if provider_status in replaces[status]:
                provider_status = status
            if event.tracks:
                tracks = event.tracks
        elif cls is SunoRequestSent:
            send_attempts = event.attempt
            send_state = _IN_FLIGHT
            retry_at = None
        elif cls is SunoTaskCreated:
            task_id = event.task_id
            send_state = _ACKNOWLEDGED
            retry_at = None
            error_message = None
        elif cls is SunoSucceeded:
            last_observed_at = at
            last_observation_source = event.source
            observations += 1
            provider_status = _SUCCESS
            tracks = event.tracks
        elif cls is SunoRequestRetryScheduled:
            send_state = _RETRY_WAIT
            retry_at = event.retry_at
            error_message = event.error
        elif cls is SunoRequestUncertain:
            send_state = _UNCERTAIN
            retry_at = None
        elif cls is LateObservation:
            late_observations += 1
        elif cls is JobFailed:
            error_code = event.error_code
            error_message = event.message
        elif cls is JobTimedOut:
            error_code = TIMEOUT_ERROR_CODE
            error_message = None
        elif cls is ClipStepReached:
            clip_step = event.step
        elif cls is ClipReady:
            clip_url = event.clip_url
            captions_url = event.captions_url
            clip_step = None
        # ClipProcessingStarted changes the stage only.
    return _new(
        JobState,
        (
            job_id,
            channel_id,
            user_id,
            request_id,
            params,
            policy,
            idempotency_key,
            fingerprint,
            exclusive,
            stage,
            version,
            created_at,
            updated_at,
            stage_since,
            task_id,
            provider_status,
            tracks,
            error_code,
            error_message,
            last_observed_at,
            last_observation_source,
            observations,
            late_observations,
            send_attempts,
            send_state,
            retry_at,
            clip_step,
            clip_url,
            captions_url,
        ),
    )


def evolve(state: JobState | None, event: Event) -> JobState:
    """The state after one more event (the Decider's ``evolve``)."""
    return fold((event,), state)
