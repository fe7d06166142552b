"""``decide(command, state) -> events``: the Decider's pure half.

A command that makes no sense in the current state is never an error: it
decides nothing (a task id recorded twice, a timeout after success), or a
``LateObservation`` when Suno said something that can no longer count (a
success after a timeout). Whether an event may happen in a stage is the one
machine's answer (:func:`clipjobs.domain._machine.next_stage`); the rules here add
only what the graph cannot know (the send's state, the deadline). Only what
``decide`` returns is ever appended, so every log satisfies the graph.
"""

from __future__ import annotations

from typing import Any

import attrs

from ._machine import next_stage
from .commands import (
    CancelJob,
    Command,
    FailJob,
    FailMediaCopy,
    FinishClip,
    KeepMedia,
    MarkRequestSent,
    MarkRequestUncertain,
    RecordClipStep,
    RecordObservation,
    RecordRetry,
    RecordTaskCreated,
    ScheduleRetry,
    StartClip,
    StartJob,
    TimeOut,
)
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
    Source,
    SunoProgressObserved,
    SunoRequestRetryScheduled,
    SunoRequestSent,
    SunoRequestUncertain,
    SunoSucceeded,
    SunoTaskCreated,
    TimeoutLimit,
)
from .stages import Stage
from .state import JobState, SendState

__all__ = ["LATE_OBSERVATIONS_KEPT", "REPEATS_COUNTED", "RETRYABLE_STAGES", "decide"]

#: The stages a job can be retried from (SPEC 10.2).
RETRYABLE_STAGES = frozenset({Stage.FAILED, Stage.CANCELLED, Stage.TIMEOUT})

#: Late observations kept per job; later ones are only counted (in metrics).
LATE_OBSERVATIONS_KEPT = 50
#: Replays recorded per job as ``ObservationRepeated``; later ones are only counted.
REPEATS_COUNTED = 100


def decide(command: Command, state: JobState | None) -> list[Event]:
    """The events ``command`` produces in ``state`` (``None``: no such job yet)."""
    if isinstance(command, StartJob):
        if state is not None:
            return []
        accepted = _accepted(command)
        if command.reused_tracks and command.policy.clip_render:
            # A re-render: the parent's song is this job's Suno result; no call is made.
            return [accepted, SunoSucceeded(Source.REUSED, command.reused_tracks, command.at)]
        return [accepted]
    if state is None:
        return []
    match command:
        case MarkRequestSent(at=at):
            return _send(state, at)
        case ScheduleRetry(error=error, retry_at=retry_at, at=at):
            if _in_flight(state):
                return [SunoRequestRetryScheduled(state.send_attempts, error, retry_at, at)]
            return []
        case MarkRequestUncertain(reason=reason, at=at):
            return [SunoRequestUncertain(reason, at)] if _in_flight(state) else []
        case RecordTaskCreated(task_id=task_id, at=at):
            if _can(state, SunoTaskCreated):
                return [SunoTaskCreated(task_id, Source.GENERATE, at)]
            if task_id == state.task_id:
                return []
            reason = "after_terminal" if state.done else "task_mismatch"
            return _late(state, LateObservation(reason, Source.GENERATE, at, task_id=task_id))
        case RecordObservation():
            return _observe(command, state)
        case FailJob(error_code=code, message=message, at=at):
            return [JobFailed(code, message, at)] if _can(state, JobFailed) else []
        case TimeOut(at=at):
            limit = state.timeout_limit_at(at)
            if limit is None or not _can(state, JobTimedOut):
                return []
            length = state.policy.max_s if limit is TimeoutLimit.AGE else state.policy.timeout_s
            return [JobTimedOut(length, at, limit)]
        case CancelJob(by=by, reason=reason, at=at):
            return [JobCancelled(by, reason, at)] if _can(state, JobCancelled) else []
        case RecordRetry(retry_job_id=child, mode=mode, at=at):
            if state.stage not in RETRYABLE_STAGES or state.retried_by == child:
                return []
            return [JobRetried(child, mode, at)]
        case StartClip(at=at):
            return [ClipProcessingStarted(at)] if _can(state, ClipProcessingStarted) else []
        case RecordClipStep(step=step, at=at):
            if _can(state, ClipStepReached) and state.clip_step is not step:
                return [ClipStepReached(step, at)]
            return []
        case FinishClip(clip_url=url, at=at, captions_url=captions, note=note):
            if not _can(state, ClipReady):
                return []
            return [ClipReady(url, at, captions_url=captions, note=note)]
        case KeepMedia(track_id=track_id, kind=kind, at=at):
            if not _media_pending(state, track_id, kind):
                return []
            kept = command
            return [MediaStored(track_id, kind, kept.sha256, kept.bytes, kept.content_type, at)]
        case FailMediaCopy(track_id=track_id, kind=kind, at=at):
            if not _media_pending(state, track_id, kind):
                return []
            failed = command
            attempt = state.media_attempts + 1
            code, message, again = failed.error_code, failed.message, failed.retry_at
            return [MediaCopyFailed(track_id, kind, code, message, attempt, at, again)]
    raise TypeError(f"not a command: {command!r}")  # pragma: no cover


def _can(state: JobState, event_type: type[Any], stage: Stage | None = None) -> bool:
    """The machine allows an event of ``event_type`` in ``stage`` (default: the job's)."""
    at = state.stage if stage is None else stage
    return next_stage(at, state.policy.clip_render, event_type) is not None


def _media_pending(state: JobState, track_id: str, kind: Any) -> bool:
    """The file is one the job still waits to keep (not kept, not given up, a known track)."""
    return any(t == track_id and k is kind for t, k, _ in state.media_pending)


def _accepted(c: StartJob) -> JobAccepted:
    """The job as asked, field for field (the tracks a re-render reuses come in later events)."""
    return JobAccepted(**{f.name: getattr(c, f.name) for f in attrs.fields(JobAccepted)})


def _send(state: JobState, at: Any) -> list[Event]:
    """The budget granted a generate call: attempt 1, a retry, or the one resend."""
    if not _can(state, SunoRequestSent):
        return []
    match state.send_state:
        case SendState.NOT_SENT:
            return [SunoRequestSent(1, at)]
        case SendState.RETRY_WAIT:
            return [SunoRequestSent(state.send_attempts + 1, at, "retry after a transient error")]
        case SendState.UNCERTAIN if state.resend_allowed:
            due = state.due_at
            if due is not None and at >= due:
                wait = f"{state.policy.resend_uncertain_after_s:g}"
                reason = f"resend: no callback named the job within {wait} s of an uncertain call"
                return [SunoRequestSent(state.send_attempts + 1, at, reason)]
    return []


def _in_flight(state: JobState) -> bool:
    return state.stage is Stage.SUNO_REQUEST_SENT and state.send_state is SendState.IN_FLIGHT


def _late(state: JobState, late: LateObservation) -> list[Event]:
    """Record what can no longer count: once each (replays are counted), up to a cap."""
    if late.key in state.late_keys:
        return _repeated(state, late.source, late.at)
    if state.late_observations >= LATE_OBSERVATIONS_KEPT:
        return []
    return [late]


def _repeated(state: JobState, source: Source, at: Any) -> list[Event]:
    if state.repeated_observations >= REPEATS_COUNTED:
        return []
    return [ObservationRepeated(source, at)]


def _observe(command: RecordObservation, state: JobState) -> list[Event]:
    obs, source, at = command.observation, command.source, command.at

    def late(reason: str) -> list[Event]:
        return _late(
            state,
            LateObservation(
                reason,
                source,
                at,
                task_id=obs.task_id,
                status=obs.status,
                tracks=obs.tracks,
                detail=obs.error_message,
            ),
        )

    if state.done:
        return late("after_terminal")
    if state.task_id is not None and obs.task_id != state.task_id:
        return late("task_mismatch")

    events: list[Event] = []
    stage = state.stage
    if state.task_id is None:
        # A callback can name the job before the generate answer is recorded
        # (or after a crash left the request uncertain): adopt its task.
        adopted = next_stage(stage, state.policy.clip_render, SunoTaskCreated)
        if adopted is None:  # pragma: no cover - a job without a task is still generating
            return late("stale")
        events.append(SunoTaskCreated(obs.task_id, source, at))
        stage = adopted

    if not _can(state, SunoSucceeded, stage):
        # Post-processing is under way: Suno's news is old news now.
        return late("duplicate" if obs.status is ProviderStatus.SUCCESS else "stale")
    if not events and source is Source.CALLBACK and _same_as_last(state, obs.status, obs.tracks):
        # A replayed callback (Suno retries, or someone else): counted, not copied.
        return _repeated(state, source, at)

    status = obs.status
    if status is ProviderStatus.SUCCESS and any(t.audio_url for t in obs.tracks):
        events.append(SunoSucceeded(source, obs.tracks, at))
    elif status.is_failure:
        events.append(JobFailed(status.value, _failure_message(command), at))
    else:
        # Progress, or a "success" without audio yet: a heartbeat either way.
        events.append(SunoProgressObserved(status, source, at, obs.tracks))
    return events


def _same_as_last(state: JobState, status: ProviderStatus, tracks: tuple[Any, ...]) -> bool:
    return status is state.provider_status and tracks in ((), state.tracks)


def _failure_message(command: RecordObservation) -> str:
    obs = command.observation
    parts = [f"Suno: {obs.status.value}"]
    if obs.error_code is not None:
        parts.append(f"(code {obs.error_code})")
    if obs.error_message:
        parts.append(f"— {obs.error_message}")
    return " ".join(parts)
