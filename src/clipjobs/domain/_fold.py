"""``evolve`` and ``fold``: a job's log into a :class:`JobState` (the Decider's ``evolve``).

The stage an event leads to comes from the one machine's compiled table
(:func:`clipjobs.domain._machine.next_stage`); what else the event changes is a small
function of the event per type, below. A fold runs on the events of one
append (the state before it is the stored projection), so it is written for
reading, not for speed.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any

import attrs

from ._machine import next_stage
from .errors import InvalidTransition
from .events import (
    ClipProcessingStarted,
    ClipReady,
    ClipStepReached,
    Event,
    JobAccepted,
    JobCancelled,
    JobFailed,
    JobRetried,
    JobTimedOut,
    LateObservation,
    MediaCopyFailed,
    MediaStored,
    ObservationRepeated,
    ProviderStatus,
    SunoProgressObserved,
    SunoRequestRetryScheduled,
    SunoRequestSent,
    SunoRequestUncertain,
    SunoSucceeded,
    SunoTaskCreated,
)
from .stages import Stage
from .state import CANCELLED_ERROR_CODE, TIMEOUT_ERROR_CODE, JobState, SendState

__all__ = ["evolve", "fold"]

#: Provider statuses never go backwards (out-of-order callbacks): a status is
#: taken when its rank is at least the current one's.
_RANK = dict.fromkeys(ProviderStatus, 3) | {
    ProviderStatus.PENDING: 0,
    ProviderStatus.TEXT_SUCCESS: 1,
    ProviderStatus.FIRST_SUCCESS: 2,
}


def fold(events: Iterable[Event], state: JobState | None = None) -> JobState:
    """Apply ``events`` in order to ``state`` (``None``: a new job's log).

    Raises :class:`~clipjobs.domain.errors.InvalidTransition` when the log breaks the
    stage graph, or does not start with ``JobAccepted``. The events change a
    working copy of the state's fields; one ``JobState`` is built at the end
    (building one costs as much as several events).
    """
    it = iter(events)
    if state is None:
        first = next(it, None)
        if not isinstance(first, JobAccepted):
            found = "an empty log" if first is None else type(first).__name__
            raise InvalidTransition(f"a job's log starts with JobAccepted, not {found}")
        state = _accepted(first)
    job = SimpleNamespace(**attrs.asdict(state, recurse=False))
    for event in it:
        dest = next_stage(job.stage, job.policy.clip_render, type(event))
        if dest is None:
            raise InvalidTransition(
                f"{type(event).__name__} is not allowed in {job.stage}"
                f" (job {job.job_id}, version {job.version})"
            )
        changes = _changes(job, event)
        at = event.at
        if dest is not job.stage or _news(job, changes):
            # Progress: what the timeout counts from (never backwards with a skewed clock).
            job.progress_at = max(job.progress_at or job.created_at, at)
        if dest is not job.stage:
            job.stage, job.stage_since = dest, at
        job.version += 1
        job.updated_at = max(job.updated_at, at)
        vars(job).update(changes)
    return JobState(**vars(job))


def evolve(state: JobState | None, event: Event) -> JobState:
    """The state after one more event (the Decider's ``evolve``)."""
    return fold((event,), state)


def _accepted(e: JobAccepted) -> JobState:
    return JobState(
        job_id=e.job_id,
        channel_id=e.channel_id,
        user_id=e.user_id,
        request_id=e.request_id,
        params=e.params,
        policy=e.policy,
        idempotency_key=e.idempotency_key,
        fingerprint=e.fingerprint,
        exclusive=e.exclusive,
        stage=Stage.REQUEST_ACCEPTED,
        version=1,
        created_at=e.at,
        updated_at=e.at,
        stage_since=e.at,
        progress_at=e.at,
        retry_of=e.retry_of,
    )


def _news(s: Any, changes: dict[str, Any]) -> bool:
    """Suno told something new: another status, or other tracks."""
    status = changes.get("provider_status", s.provider_status)
    tracks = changes.get("tracks", s.tracks)
    return bool(status is not s.provider_status or tracks != s.tracks)


def _changes(s: Any, event: Event) -> dict[str, Any]:
    """What ``event`` changes in the job ``s`` (its fields) besides the stage, version and times."""
    match event:
        case SunoRequestSent(attempt=attempt):
            resent = s.send_state is SendState.UNCERTAIN
            return {
                "send_attempts": attempt,
                "send_state": SendState.IN_FLIGHT,
                "retry_at": None,
                "uncertain_since": None,
                "resends": s.resends + 1 if resent else s.resends,
            }
        case SunoRequestRetryScheduled(error=error, retry_at=retry_at):
            return {
                "send_state": SendState.RETRY_WAIT,
                "retry_at": retry_at,
                "error_message": error,
            }
        case SunoRequestUncertain(at=at):
            return {"send_state": SendState.UNCERTAIN, "retry_at": None, "uncertain_since": at}
        case SunoTaskCreated(task_id=task_id):
            return {
                "task_id": task_id,
                "send_state": SendState.ACKNOWLEDGED,
                "retry_at": None,
                "uncertain_since": None,
                "error_message": None,
            }
        case SunoProgressObserved(status=status, source=source, at=at, tracks=tracks):
            current = s.provider_status
            newer = current is None or _RANK[status] >= _RANK[current]
            return {
                **_observed(s, source, at),
                "provider_status": status if newer else current,
                "tracks": tracks or s.tracks,
            }
        case SunoSucceeded(source=source, tracks=tracks, at=at):
            return {
                **_observed(s, source, at),
                "provider_status": ProviderStatus.SUCCESS,
                "tracks": tracks,
            }
        case LateObservation(key=key):
            return {"late_observations": s.late_observations + 1, "late_keys": (*s.late_keys, key)}
        case ObservationRepeated():
            return {"repeated_observations": s.repeated_observations + 1}
        case JobFailed(error_code=code, message=message):
            return {"error_code": code, "error_message": message}
        case JobTimedOut(limit=limit):
            return {"error_code": TIMEOUT_ERROR_CODE, "error_message": None, "timeout_limit": limit}
        case JobCancelled(by=by, reason=reason):
            return {
                "error_code": CANCELLED_ERROR_CODE,
                "error_message": reason,
                "cancelled_by": by,
                "clip_step": None,
            }
        case JobRetried(retry_job_id=child):
            return {"retried_by": child}
        case ClipStepReached(step=step):
            return {"clip_step": step}
        case ClipReady(clip_url=url, captions_url=captions):
            return {"clip_url": url, "captions_url": captions, "clip_step": None}
        case ClipProcessingStarted():
            return {}
        case MediaStored(track_id=track_id, kind=kind):
            kept = tuple(m for m in s.media if (m.track_id, m.kind) != (track_id, kind))
            # A file given up stays an error to show; a failure since mended does not.
            shown = bool(s.media_skipped)
            return {
                "media": (*kept, event),
                "media_attempts": 0,
                "media_retry_at": None,
                "media_error_code": s.media_error_code if shown else None,
                "media_error": s.media_error if shown else None,
            }
        case MediaCopyFailed(track_id=track_id, kind=kind, retry_at=retry_at):
            dropped: tuple[str, ...] = () if retry_at else (f"{track_id}/{kind.value}",)
            return {
                "media_skipped": (*s.media_skipped, *dropped),
                "media_attempts": 0 if retry_at is None else event.attempt,
                "media_retry_at": retry_at,
                "media_error_code": event.error_code,
                "media_error": event.message,
            }
    raise InvalidTransition(f"not an event of a job's log: {event!r}")  # pragma: no cover


def _observed(s: Any, source: Any, at: Any) -> dict[str, Any]:
    return {
        "last_observed_at": at,
        "last_observation_source": source,
        "observations": s.observations + 1,
    }
