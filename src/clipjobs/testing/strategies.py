"""Hypothesis strategies for clipjobs values, events, commands and whole logs.

Shipped with the package so users can test their own code (a store, a
projection, a dashboard) against the same inputs clipjobs tests itself with.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from attrs import evolve
from hypothesis import strategies as st

from ..domain._decide import decide
from ..domain._fold import fold
from ..domain.commands import (
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
from ..domain.events import (
    ClipProcessingStarted,
    ClipReady,
    ClipStep,
    ClipStepReached,
    Event,
    GenerationParams,
    JobAccepted,
    JobCancelled,
    JobFailed,
    JobPolicy,
    JobRetried,
    JobTimedOut,
    LateObservation,
    MediaCopyFailed,
    MediaKind,
    MediaStored,
    Observation,
    ProviderStatus,
    Source,
    SunoProgressObserved,
    SunoRequestRetryScheduled,
    SunoRequestSent,
    SunoRequestUncertain,
    SunoSucceeded,
    SunoTaskCreated,
    TimeoutLimit,
    Track,
)
from ..domain.state import JobState

__all__ = [
    "commands",
    "events",
    "generation_params",
    "job_ids",
    "job_logs",
    "observations",
    "policies",
    "task_reports",
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
        max_s=st.integers(60, 7200),
        poll_after_s=st.floats(1, 120),
        poll_interval_s=st.floats(1, 120),
        clip_render=st.booleans(),
        keep_media=st.booleans(),
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
            retry_of=st.none() | job_ids(),
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
        st.builds(
            JobTimedOut,
            timeout_s=st.integers(1, 10_000),
            at=ts,
            limit=st.none() | st.sampled_from(TimeoutLimit),
        ),
        st.builds(JobCancelled, by=_ident, reason=st.none() | _text, at=ts),
        st.builds(
            JobRetried, retry_job_id=job_ids(), mode=st.sampled_from(["start", "clip"]), at=ts
        ),
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
        st.builds(
            MediaStored,
            track_id=_ident,
            kind=st.sampled_from(MediaKind),
            sha256=st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
            bytes=st.integers(1, 2**40),
            content_type=st.sampled_from(["audio/mpeg", "image/jpeg", "image/png"]),
            at=ts,
        ),
        st.builds(
            MediaCopyFailed,
            track_id=_ident,
            kind=st.sampled_from(MediaKind),
            error_code=_ident,
            message=_text,
            attempt=st.integers(1, 20),
            at=ts,
            retry_at=st.none() | ts,
        ),
    )


_Make = Callable[[datetime], Command]


def _retry(error: str, delay: timedelta) -> _Make:
    return lambda at: ScheduleRetry(error, at + delay, at)


def _observe(obs: Observation, source: Source) -> _Make:
    return lambda at: RecordObservation(obs, source, at)


def _clip_step(step: ClipStep) -> _Make:
    return lambda at: RecordClipStep(step, at)


def _media(draw: Any, track_id: str) -> _Make:
    """Keeping one of a track's files: copied, or a failure retried later or given up."""
    kind = draw(st.sampled_from(MediaKind))
    outcome = draw(st.sampled_from(["kept"] * 3 + ["retry", "give_up"]))
    if outcome == "kept":
        sha = hashlib.sha256(f"{track_id}/{kind.value}".encode()).hexdigest()
        return lambda at: KeepMedia(track_id, kind, sha, 1234, f"{kind.value}/x", at)
    if outcome == "retry":
        return lambda at: FailMediaCopy(
            track_id, kind, "CLIP_DOWNLOAD_FAILED", "HTTP 503", at, at + timedelta(seconds=5)
        )
    return lambda at: FailMediaCopy(track_id, kind, "CLIP_HOST_NOT_ALLOWED", "refused", at)


def _cancel(draw: Any) -> _Make:
    by, reason = draw(_ident), draw(st.none() | _text)
    return lambda at: CancelJob(by, reason, at)


def _retried(draw: Any) -> _Make:
    child, mode = draw(job_ids()), draw(st.sampled_from(["start", "clip"]))
    return lambda at: RecordRetry(child, mode, at)


def _random_command(draw: Any, task_ids: list[str]) -> _Make:
    """Any command, with any arguments: the odd cases a plausible story never has."""
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
                "media",
                "cancel",
                "retried",
            ]
        )
    )
    if kind == "media":
        return _media(draw, draw(st.sampled_from([f"{t}-1" for t in task_ids])))
    if kind == "sent":
        return MarkRequestSent
    if kind == "retry":
        return _retry(draw(_text), timedelta(seconds=draw(st.integers(1, 60))))
    if kind == "uncertain":
        reason = draw(_text)
        return lambda at: MarkRequestUncertain(reason, at)
    if kind == "task":
        task = draw(st.sampled_from(task_ids))
        return lambda at: RecordTaskCreated(task, at)
    if kind == "observe":
        obs = draw(observations(st.sampled_from(task_ids)))
        return _observe(obs, draw(st.sampled_from([Source.CALLBACK, Source.POLL])))
    if kind == "fail":
        code, message = draw(_ident), draw(_text)
        return lambda at: FailJob(code, message, at)
    if kind == "timeout":
        return TimeOut
    if kind == "clip":
        return StartClip
    if kind == "clip_step":
        return _clip_step(draw(st.sampled_from(ClipStep)))
    if kind == "cancel":
        return _cancel(draw)
    if kind == "retried":
        return _retried(draw)
    captions = draw(st.sampled_from([None, "/media/clip.srt"]))
    note = draw(st.none() | _text)
    return lambda at: FinishClip("/media/clip.mp4", at, captions, note)


def _chance(draw: Any, percent: int) -> bool:
    """True about ``percent`` times in 100; shrinks to False.

    ``sampled_from``, not ``integers``: hypothesis draws the ends of an integer
    range far more often than the middle, which would skew every weight here.
    """
    return bool(draw(st.sampled_from(range(100))) >= 100 - percent)


def _index(draw: Any, lo: int, hi: int) -> int:
    """An index from ``lo`` to ``hi`` inclusive, about uniformly (see :func:`_chance`)."""
    return int(draw(st.sampled_from(range(lo, hi + 1))))


def _finished_tracks(task_id: str, found: tuple[Track, ...]) -> tuple[Track, ...]:
    """The tracks of a finished task: at least one, each with a downloadable audio URL."""
    chosen = found or (Track(f"{task_id}-1"),)
    return tuple(
        t if t.audio_url else evolve(t, audio_url=f"https://cdn.example/{task_id}-{n}.mp3")
        for n, t in enumerate(chosen, start=1)
    )


#: Suno's progress statuses in the order it reports them.
_PROGRESS = (ProviderStatus.PENDING, ProviderStatus.TEXT_SUCCESS, ProviderStatus.FIRST_SUCCESS)
_FAILED = [s for s in ProviderStatus if s.is_failure]


@st.composite
def task_reports(draw: Any, task_id: str, outcome: str | None = None) -> list[Observation]:
    """What Suno says about one task, in its order: some progress, then at most one outcome.

    ``outcome``: ``"success"`` (``SUCCESS`` with audio, sometimes after a
    ``SUCCESS`` whose audio is not ready yet), ``"failure"`` (one failure
    status) or ``"pending"`` (Suno never finishes); drawn when ``None``,
    success most often. One consistent story: however many times and in
    whatever order it is delivered, a job must end the same.
    """
    if outcome is None:
        outcome = draw(st.sampled_from(["success"] * 7 + ["failure"] * 2 + ["pending"]))
    some_tracks = st.lists(tracks(), max_size=2).map(tuple)
    reports = [
        Observation(
            task_id,
            status,
            draw(some_tracks) if status is ProviderStatus.FIRST_SUCCESS else (),
        )
        for status in _PROGRESS
        if _chance(draw, 60)
    ]
    if outcome == "success":
        if _chance(draw, 20):  # "SUCCESS" while the audio is still only streamable
            preview = tuple(evolve(t, audio_url="") for t in draw(some_tracks))
            reports.append(Observation(task_id, ProviderStatus.SUCCESS, preview))
        done = _finished_tracks(task_id, draw(some_tracks))
        reports.append(Observation(task_id, ProviderStatus.SUCCESS, done))
    elif outcome == "failure":
        reports.append(
            Observation(
                task_id,
                draw(st.sampled_from(_FAILED)),
                error_code=draw(st.none() | st.sampled_from([400, 413, 451, 500, 531])),
                error_message=draw(st.none() | _text),
            )
        )
    elif outcome != "pending":
        raise ValueError(f"outcome is success, failure or pending, not {outcome!r}")
    return reports


def _insert(draw: Any, items: list[tuple[str, _Make]], item: tuple[str, _Make], lo: int) -> None:
    """Put ``item`` anywhere in ``items`` from index ``lo`` on."""
    items.insert(_index(draw, min(lo, len(items)), len(items)), item)


@st.composite
def commands(draw: Any, *, start: datetime | None = None, max_size: int = 30) -> list[Command]:
    """A command sequence for one job: mostly a plausible life, with every kind of noise.

    The life: the generate call (sometimes retried after transient errors,
    sometimes crashing mid-send so that only a callback can name the task,
    sometimes answered before it was marked sent), Suno's reports on the task
    (:func:`task_reports`: success most often), and post-processing when the
    job's policy asks for it, which usually ends in a clip.

    The noise, each common: callbacks delivered twice, out of order, after the
    job ended, or about another task; the service failing the job or timing
    it out at any point; the clock going backwards (another process's clock,
    or NTP); a few commands drawn at random; the life cut short. Time moves
    0-30 s between commands, so a job times out only when a timeout is
    placed (past its deadline). At most ``max_size`` commands follow the
    ``StartJob``.
    """
    at = start or draw(timestamps().filter(lambda d: d.year < 2090))
    task_ids = [draw(_ident), draw(_ident)]
    task, other_task = task_ids
    # Post-processing more often than not: it is where most of the graph's edges are.
    policy = evolve(draw(policies()), clip_render=_chance(draw, 80))
    # A retry of a finished job; a re-render (retry from the clip) reuses its tracks.
    retry_of = draw(job_ids()) if _chance(draw, 15) else None
    rerender = retry_of is not None and policy.clip_render and _chance(draw, 50)
    reused = _finished_tracks(task, draw(st.lists(tracks(), max_size=2).map(tuple)))
    job = StartJob(
        job_id=draw(job_ids()),
        channel_id=draw(_ident),
        user_id=draw(_ident),
        request_id=draw(_ident),
        params=draw(generation_params()),
        at=at,
        idempotency_key=draw(st.none() | _ident),
        policy=policy,
        retry_of=retry_of,
        reused_tracks=reused if rerender else (),
    )

    # The generate call. ``marks``: where each phase of the job's life begins in ``items``.
    items: list[tuple[str, _Make]] = []
    marks = {"accepted": 0}
    send = draw(st.sampled_from(["ok"] * 4 + ["retry"] * 2 + ["crash"] * 3 + ["early"]))
    if rerender:
        send = "none"  # Suno's part is the parent's: nothing is sent
    if send not in ("early", "none"):
        items.append(("send", MarkRequestSent))
    for _ in range(draw(st.integers(1, 2)) if send == "retry" else 0):
        error, delay = draw(_text), timedelta(seconds=draw(st.integers(1, 60)))
        items.append(("send", _retry(error, delay)))
        items.append(("send", MarkRequestSent))
    if send == "crash":
        reason = draw(_text)
        items.append(("send", lambda at: MarkRequestUncertain(reason, at)))
    marks["sent"] = len(items)

    # What Suno says: the generate answer (lost in a crash), then its reports.
    suno: list[tuple[str, _Make]] = []
    answer: tuple[str, _Make] = ("suno", lambda at: RecordTaskCreated(task, at))
    if send not in ("crash", "none"):
        suno.append(answer)
    reports = [] if rerender else draw(task_reports(task))
    made = [t.id for obs in reports if obs.status is ProviderStatus.SUCCESS for t in obs.tracks]
    progress: list[tuple[str, _Make]] = []  # reports that leave the task pending (STAGE_40)
    for obs in reports:
        polled = send != "crash" and _chance(draw, 30)
        source = Source.POLL if polled else Source.CALLBACK
        suno.append(("suno", _observe(obs, source)))
        if obs.status in _PROGRESS:
            progress.append(suno[-1])
    for _ in range(_index(draw, 0, 2) if len(suno) > 1 else 0):  # out of order
        i, j = _index(draw, 0, len(suno) - 1), _index(draw, 0, len(suno) - 1)
        suno[i], suno[j] = suno[j], suno[i]
    items += suno
    # Once the task is known (from the generate answer, or a callback naming it).
    known = next((i for i, item in enumerate(suno) if item is answer), 0)
    marks["task"] = marks["sent"] + min(known + 1, len(suno))
    # Once Suno has said the task is under way (when it did), and some time after that.
    heard = [i for i, item in enumerate(suno) if any(item is p for p in progress)]
    marks["pending"] = marks["sent"] + max(known + 1, heard[0] + 1) if heard else marks["task"]
    marks["generating"] = _index(draw, marks["task"], len(items))
    marks["finished"] = len(items)

    # Post-processing, when the policy asks for it: usually a clip, sometimes a failure
    # before it starts (the renderer cannot be had) or during it, sometimes never done.
    if policy.clip_render:
        end = draw(st.sampled_from(["ready"] * 5 + ["failed"] * 2 + ["refused", "none"]))
        if end == "refused":
            items.append(("clip", lambda at: FailJob("CLIP_FAILED", "no renderer", at)))
        else:
            items.append(render := ("clip", StartClip))
            for step in ClipStep:
                if _chance(draw, 80):
                    items.append(("clip", _clip_step(step)))
        marks["clipping"] = _index(draw, marks["finished"] + 1, len(items))
        if end == "ready":
            items.append(("clip", lambda at: FinishClip("/media/clip.mp4", at)))
        elif end == "failed":
            code = draw(st.sampled_from(["CLIP_FAILED", "CLIP_RENDER_TIMEOUT"]))
            items.append(("clip", lambda at: FailJob(code, "post-processing failed", at)))

    # Keeping the media, when the policy asks for it: after success, or after the end.
    if policy.keep_media and made:
        for _ in range(draw(st.integers(1, 4))):
            media = ("media", _media(draw, draw(st.sampled_from(made))))
            _insert(draw, items, media, marks["finished"])

    if policy.clip_render and end != "refused":  # where the render runs (media may precede it)
        marks["clip started"] = 1 + next(i for i, item in enumerate(items) if item is render)

    # The service steps in: a failure in any phase, or a timeout past the deadline while Suno
    # generates (later it changes nothing); and Suno about another task. Each phase alike,
    # however many commands it spans.
    code, message = draw(_ident), draw(_text)
    steps_in: list[tuple[int, tuple[str, _Make]]] = []
    brief = [m for m in ("sent", "task", "pending", "clip started") if m in marks]
    phases = st.sampled_from([*sorted(marks), *brief, *brief, *brief])  # brief stages: more often
    if _chance(draw, 20):
        steps_in.append((marks[draw(phases)], ("fail", lambda at: FailJob(code, message, at))))
    if _chance(draw, 25):
        phase = draw(st.sampled_from(["accepted", "sent", "task", "generating"]))
        steps_in.append((marks[phase], ("deadline", TimeOut)))
    if _chance(draw, 25):  # someone cancels the job, in any phase
        steps_in.append((marks[draw(phases)], ("cancel", _cancel(draw))))
    if _chance(draw, 20):  # a callback about another task (one of ours, or a forged one)
        obs = draw(observations(st.just(other_task)))
        phase = draw(st.sampled_from(sorted(marks)))
        steps_in.append((marks[phase], ("suno", _observe(obs, Source.CALLBACK))))
    for index, item in sorted(steps_in, key=lambda x: -x[0]):
        items.insert(index, item)

    # Noise.
    for item in suno:
        if _chance(draw, 25):  # delivered again, later
            _insert(draw, items, item, 1 + next(i for i, x in enumerate(items) if x is item))
    if suno and _chance(draw, 35):  # after the end
        for _ in range(draw(st.integers(1, 2))):
            items.append(draw(st.sampled_from(suno)))
    if _chance(draw, 10):
        _insert(draw, items, ("other", TimeOut), 0)  # before its deadline: nothing happens
    for _ in range(draw(st.integers(1, 3)) if _chance(draw, 30) else 0):
        _insert(draw, items, ("other", _random_command(draw, task_ids)), 0)
    if _chance(draw, 15):  # the job is retried (only a finished one records it)
        items.append(("other", _retried(draw)))
    if items and _chance(draw, 10):  # cut short: the job is still running
        del items[_index(draw, 0, len(items) - 1) :]
    del items[max_size:]

    # Time: forward a little, sometimes backwards, past a limit when a timeout is placed
    # (without progress for timeout_s, or past the job's age limit).
    age_limit = at + timedelta(seconds=max(policy.max_s, policy.timeout_s))
    latest = at
    out: list[Command] = [job]
    for kind, make in items:
        if kind == "deadline":
            idle = latest + timedelta(seconds=policy.timeout_s)
            past = min(idle, age_limit) if _chance(draw, 50) else idle
            at = max(latest, past) + timedelta(seconds=draw(st.integers(0, 60)))
        elif _chance(draw, 15):
            at -= timedelta(seconds=draw(st.integers(1, 120)))
        else:
            at += timedelta(seconds=draw(st.integers(0, 30)))
        latest = max(latest, at)
        out.append(make(at))
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
