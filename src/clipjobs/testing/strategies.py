"""Hypothesis strategies for clipjobs values, events, commands and whole logs.

Shipped with the package so users can test their own code (a store, a
projection, a dashboard) against the same inputs clipjobs tests itself with.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from .._decide import decide
from .._fold import fold
from ..commands import (
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
from ..events import (
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
    Observation,
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
from ..state import JobState

__all__ = [
    "commands",
    "events",
    "generation_params",
    "job_ids",
    "job_logs",
    "observations",
    "policies",
    "timestamps",
    "tracks",
]

_text = st.text(max_size=40)
_ident = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=6, max_size=12)


def timestamps() -> st.SearchStrategy[datetime]:
    """Timezone-aware UTC instants, microsecond precision."""
    return st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    )


def job_ids() -> st.SearchStrategy[str]:
    return st.builds(lambda ms, r: f"job_{ms}_{r}", st.integers(10**12, 10**13 - 1), _ident)


def tracks() -> st.SearchStrategy[Track]:
    url = st.sampled_from(["", "https://cdn.example/a.mp3", "https://cdn.example/b.mp3"])
    return st.builds(
        Track,
        id=_ident,
        audio_url=url,
        stream_audio_url=url,
        image_url=url,
        title=_text,
        duration=st.none() | st.floats(0, 600, allow_nan=False),
    )


def generation_params() -> st.SearchStrategy[GenerationParams]:
    return st.builds(
        GenerationParams,
        prompt=_text,
        style=st.none() | _text,
        title=st.none() | _text,
        custom_mode=st.booleans(),
        instrumental=st.booleans(),
        model=st.sampled_from(["V4", "V4_5", "V4_5PLUS", "V4_5ALL", "V5"]),
        negative_tags=st.none() | _text,
    )


def policies() -> st.SearchStrategy[JobPolicy]:
    return st.builds(
        JobPolicy,
        timeout_s=st.integers(60, 3600),
        poll_after_s=st.floats(1, 120),
        poll_interval_s=st.floats(1, 120),
        clip_render=st.booleans(),
    )


def observations(task_id: str | st.SearchStrategy[str] = _ident) -> st.SearchStrategy[Observation]:
    task = task_id if isinstance(task_id, st.SearchStrategy) else st.just(task_id)
    return st.builds(
        Observation,
        task_id=task,
        status=st.sampled_from(ProviderStatus),
        tracks=st.lists(tracks(), max_size=2).map(tuple),
        error_code=st.none() | st.sampled_from([400, 408, 413, 451, 500, 501, 531]),
        error_message=st.none() | _text,
    )


def events() -> st.SearchStrategy[Event]:
    """Any single event (not necessarily valid in any particular state)."""
    ts = timestamps()
    track_tuples = st.lists(tracks(), max_size=2).map(tuple)
    return st.one_of(
        st.builds(
            JobAccepted,
            job_id=job_ids(),
            channel_id=_ident,
            user_id=_ident,
            request_id=_ident,
            params=generation_params(),
            at=ts,
            idempotency_key=st.none() | _ident,
            fingerprint=_ident,
            policy=policies(),
            exclusive=st.booleans(),
        ),
        st.builds(SunoRequestSent, attempt=st.integers(1, 9), at=ts),
        st.builds(
            SunoRequestRetryScheduled,
            attempt=st.integers(1, 9),
            error=_text,
            retry_at=ts,
            at=ts,
        ),
        st.builds(SunoRequestUncertain, reason=_text, at=ts),
        st.builds(SunoTaskCreated, task_id=_ident, source=st.sampled_from(Source), at=ts),
        st.builds(
            SunoProgressObserved,
            status=st.sampled_from(ProviderStatus),
            source=st.sampled_from(Source),
            at=ts,
            tracks=track_tuples,
        ),
        st.builds(SunoSucceeded, source=st.sampled_from(Source), tracks=track_tuples, at=ts),
        st.builds(JobFailed, error_code=_ident, message=_text, at=ts),
        st.builds(JobTimedOut, timeout_s=st.integers(1, 10_000), at=ts),
        st.builds(
            LateObservation,
            reason=st.sampled_from(["after_terminal", "duplicate", "stale", "task_mismatch"]),
            source=st.sampled_from(Source),
            at=ts,
            task_id=st.none() | _ident,
            status=st.none() | st.sampled_from(ProviderStatus),
            tracks=track_tuples,
            detail=st.none() | _text,
        ),
        st.builds(ClipProcessingStarted, at=ts),
        st.builds(ClipStepReached, step=st.sampled_from(ClipStep), at=ts),
        st.builds(
            ClipReady,
            clip_url=_text,
            at=ts,
            captions_url=st.none() | _text,
            note=st.none() | _text,
        ),
    )


def _command(draw: Any, at: datetime, task_ids: list[str]) -> Command:
    kind = draw(
        st.sampled_from(
            [
                "sent",
                "retry",
                "uncertain",
                "task",
                "observe",
                "observe",
                "observe",
                "fail",
                "timeout",
                "clip",
                "clip_step",
                "clip_done",
            ]
        )
    )
    if kind == "sent":
        return MarkRequestSent(at)
    if kind == "retry":
        return ScheduleRetry(draw(_text), at + timedelta(seconds=draw(st.integers(1, 60))), at)
    if kind == "uncertain":
        return MarkRequestUncertain(draw(_text), at)
    if kind == "task":
        return RecordTaskCreated(draw(st.sampled_from(task_ids)), at)
    if kind == "observe":
        obs = draw(observations(st.sampled_from(task_ids)))
        return RecordObservation(obs, draw(st.sampled_from([Source.CALLBACK, Source.POLL])), at)
    if kind == "fail":
        return FailJob(draw(_ident), draw(_text), at)
    if kind == "timeout":
        return TimeOut(at)
    if kind == "clip":
        return StartClip(at)
    if kind == "clip_step":
        return RecordClipStep(draw(st.sampled_from(ClipStep)), at)
    captions = draw(st.sampled_from([None, "/media/clip.srt"]))
    return FinishClip("/media/clip.mp4", at, captions, draw(st.none() | _text))


@st.composite
def commands(draw: Any, *, start: datetime | None = None, max_size: int = 30) -> list[Command]:
    """A random command sequence for one job: duplicated, out of order, late, racing.

    Times move forward by 0–400 s between commands, so timeouts happen too.
    Task ids come from a pool of two, so mismatches and duplicates happen.
    """
    at = start or draw(timestamps().filter(lambda d: d.year < 2090))
    task_ids = [draw(_ident), draw(_ident)]
    job = StartJob(
        job_id=draw(job_ids()),
        channel_id=draw(_ident),
        user_id=draw(_ident),
        request_id=draw(_ident),
        params=draw(generation_params()),
        at=at,
        idempotency_key=draw(st.none() | _ident),
        policy=draw(policies()),
    )
    out: list[Command] = [job]
    for _ in range(draw(st.integers(0, max_size))):
        at = at + timedelta(seconds=draw(st.integers(0, 400)))
        out.append(_command(draw, at, task_ids))
    return out


def run(commands_: list[Command], state: JobState | None = None) -> tuple[list[Event], JobState]:
    """Decide and fold a command sequence; the whole log and the final state."""
    log: list[Event] = []
    for command in commands_:
        new = decide(command, state)
        if new:
            state = fold(new, state)
            log.extend(new)
    if state is None:
        raise ValueError("the commands never started a job")
    return log, state


@st.composite
def job_logs(draw: Any, *, max_size: int = 30) -> list[Event]:
    """A valid log: what ``decide`` made of a random command sequence."""
    log, _ = run(draw(commands(max_size=max_size)))
    return log
