"""``decide(command, state) -> events``: the Decider's pure half.

A command that makes no sense in the current state is never an error: it
decides nothing (a task id recorded twice, a timeout after success), or a
``LateObservation`` when Suno said something that can no longer count (a
success after a timeout). Only what ``decide`` returns is ever appended, so
every log satisfies the stage graph by construction.
"""

from __future__ import annotations

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
    StartJob,
    TimeOut,
)
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
    Source,
    SunoProgressObserved,
    SunoRequestRetryScheduled,
    SunoRequestSent,
    SunoRequestUncertain,
    SunoSucceeded,
    SunoTaskCreated,
)
from .stages import Stage
from .state import JobState, SendState

__all__ = ["decide"]

_AWAITING_TASK = (Stage.REQUEST_ACCEPTED, Stage.SUNO_REQUEST_SENT)
_GENERATING = (Stage.SUNO_TASK_CREATED, Stage.SUNO_PENDING)


def decide(command: Command, state: JobState | None) -> list[Event]:
    """The events ``command`` produces in ``state`` (``None``: no such job yet)."""
    if isinstance(command, StartJob):
        return [] if state is not None else [_accepted(command)]
    if state is None:
        return []
    match command:
        case MarkRequestSent(at=at):
            if state.stage is Stage.REQUEST_ACCEPTED:
                return [SunoRequestSent(1, at)]
            if state.stage is Stage.SUNO_REQUEST_SENT and state.send_state is SendState.RETRY_WAIT:
                return [SunoRequestSent(state.send_attempts + 1, at)]
            return []
        case ScheduleRetry(error=error, retry_at=retry_at, at=at):
            if _in_flight(state):
                return [SunoRequestRetryScheduled(state.send_attempts, error, retry_at, at)]
            return []
        case MarkRequestUncertain(reason=reason, at=at):
            return [SunoRequestUncertain(reason, at)] if _in_flight(state) else []
        case RecordTaskCreated(task_id=task_id, at=at):
            if state.stage in _AWAITING_TASK and not state.done:
                return [SunoTaskCreated(task_id, Source.GENERATE, at)]
            if task_id == state.task_id:
                return []
            reason = "after_terminal" if state.done else "task_mismatch"
            return [LateObservation(reason, Source.GENERATE, at, task_id=task_id)]
        case RecordObservation():
            return _observe(command, state)
        case FailJob(error_code=code, message=message, at=at):
            return [] if state.done else [JobFailed(code, message, at)]
        case TimeOut(at=at):
            deadline = state.deadline_at
            if deadline is None or at < deadline:
                return []
            return [JobTimedOut(state.policy.timeout_s, at)]
        case StartClip(at=at):
            if state.stage is Stage.SUNO_SUCCESS and not state.done:
                return [ClipProcessingStarted(at)]
            return []
        case RecordClipStep(step=step, at=at):
            if state.stage is Stage.CLIP_PROCESSING and state.clip_step is not step:
                return [ClipStepReached(step, at)]
            return []
        case FinishClip(clip_url=url, at=at, captions_url=captions, note=note):
            if state.stage is not Stage.CLIP_PROCESSING:
                return []
            return [ClipReady(url, at, captions_url=captions, note=note)]
    raise TypeError(f"not a command: {command!r}")  # pragma: no cover


def _accepted(c: StartJob) -> JobAccepted:
    return JobAccepted(
        job_id=c.job_id,
        channel_id=c.channel_id,
        user_id=c.user_id,
        request_id=c.request_id,
        params=c.params,
        at=c.at,
        idempotency_key=c.idempotency_key,
        fingerprint=c.fingerprint,
        policy=c.policy,
        exclusive=c.exclusive,
    )


def _in_flight(state: JobState) -> bool:
    return state.stage is Stage.SUNO_REQUEST_SENT and state.send_state is SendState.IN_FLIGHT


def _observe(command: RecordObservation, state: JobState) -> list[Event]:
    obs, source, at = command.observation, command.source, command.at

    def late(reason: str) -> list[Event]:
        return [
            LateObservation(
                reason,
                source,
                at,
                task_id=obs.task_id,
                status=obs.status,
                tracks=obs.tracks,
                detail=obs.error_message,
            )
        ]

    if state.done:
        return late("after_terminal")
    if state.task_id is not None and obs.task_id != state.task_id:
        return late("task_mismatch")

    events: list[Event] = []
    stage = state.stage
    if state.task_id is None:
        # A callback can name the job before the generate answer is recorded
        # (or after a crash left the request uncertain): adopt its task.
        events.append(SunoTaskCreated(obs.task_id, source, at))
        stage = Stage.SUNO_TASK_CREATED

    if stage not in _GENERATING:
        # Post-processing is under way: Suno's news is old news now.
        return late("duplicate" if obs.status is ProviderStatus.SUCCESS else "stale")

    status = obs.status
    if status is ProviderStatus.SUCCESS and any(t.audio_url for t in obs.tracks):
        events.append(SunoSucceeded(source, obs.tracks, at))
    elif status.is_failure:
        events.append(JobFailed(status.value, _failure_message(command), at))
    else:
        # Progress, or a "success" without audio yet: a heartbeat either way.
        events.append(SunoProgressObserved(status, source, at, obs.tracks))
    return events


def _failure_message(command: RecordObservation) -> str:
    obs = command.observation
    parts = [f"Suno: {obs.status.value}"]
    if obs.error_code is not None:
        parts.append(f"(code {obs.error_code})")
    if obs.error_message:
        parts.append(f"— {obs.error_message}")
    return " ".join(parts)
