"""Decisions in the cases people ask about: duplicates, late news, races."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from clipjobs import (
    FailJob,
    GenerationParams,
    JobPolicy,
    JobState,
    LateObservation,
    MarkRequestSent,
    MarkRequestUncertain,
    Observation,
    ProviderStatus,
    RecordObservation,
    RecordTaskCreated,
    ScheduleRetry,
    SendState,
    Source,
    Stage,
    StartClip,
    StartJob,
    SunoSucceeded,
    TimeOut,
    Track,
    Work,
    decide,
    fold,
)
from clipjobs.domain.errors import InvalidTransition
from clipjobs.domain.events import JobFailed, SunoRequestSent, SunoRequestUncertain

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
TRACKS = (Track("a", audio_url="https://cdn/a.mp3"), Track("b", audio_url="https://cdn/b.mp3"))


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


#: The request sent at 1 s and Suno's task ``t1`` recorded at 2 s: where most cases start.
TASK_T1 = (MarkRequestSent(at(1)), RecordTaskCreated("t1", at(2)))


def run(*commands: object, policy: JobPolicy | None = None) -> JobState:
    state = fold(
        decide(
            StartJob(
                "job_1_abcdef",
                "ch",
                "u",
                "req",
                GenerationParams(),
                T0,
                policy=policy or JobPolicy(),
            ),
            None,
        )
    )
    for command in commands:
        events = decide(command, state)  # type: ignore[arg-type]
        if events:
            state = fold(events, state)
    return state


def observe(
    status: ProviderStatus, seconds: float, task: str = "t1", source: Source = Source.CALLBACK
) -> RecordObservation:
    tracks = TRACKS if status is ProviderStatus.SUCCESS else ()
    return RecordObservation(Observation(task, status, tracks), source, at(seconds))


def test_happy_path_reaches_success() -> None:
    """Sent, task created, progress, success: stage 50 with the first track's audio."""
    state = run(
        *TASK_T1,
        observe(ProviderStatus.TEXT_SUCCESS, 30),
        observe(ProviderStatus.SUCCESS, 120),
    )
    assert state.stage is Stage.SUNO_SUCCESS
    assert state.done
    assert state.audio_url == "https://cdn/a.mp3"
    assert state.version == 5
    assert state.updated_at == at(120)


def test_task_id_twice_decides_nothing() -> None:
    """Recording the same task id again is a no-op."""
    state = run(*TASK_T1)
    assert decide(RecordTaskCreated("t1", at(3)), state) == []


def test_success_after_timeout_is_recorded_late() -> None:
    """A success after the timeout is kept as a LateObservation and changes no stage."""
    state = run(*TASK_T1, TimeOut(at(602)))
    assert state.stage is Stage.TIMEOUT
    events = decide(observe(ProviderStatus.SUCCESS, 700), state)
    assert len(events) == 1
    assert isinstance(events[0], LateObservation)
    assert events[0].reason == "after_terminal"
    assert fold(events, state).stage is Stage.TIMEOUT


def test_timeout_before_deadline_decides_nothing() -> None:
    """The sweeper's early or repeated TimeOut does nothing."""
    state = run(MarkRequestSent(at(1)))
    assert decide(TimeOut(at(600)), state) == []  # 600 s after the last progress (at 1 s)
    timed_out = run(MarkRequestSent(at(1)), TimeOut(at(601)))
    assert timed_out.stage is Stage.TIMEOUT
    assert decide(TimeOut(at(900)), timed_out) == []


def test_racing_success_and_timeout_one_wins() -> None:
    """Success then timeout: success stays; timeout then success: timeout stays."""
    a = run(
        *TASK_T1,
        observe(ProviderStatus.SUCCESS, 602),
        TimeOut(at(602)),
    )
    b = run(
        *TASK_T1,
        TimeOut(at(602)),
        observe(ProviderStatus.SUCCESS, 602),
    )
    assert a.stage is Stage.SUNO_SUCCESS
    assert b.stage is Stage.TIMEOUT
    assert b.late_observations == 1


def test_duplicate_complete_callbacks_one_success() -> None:
    """The same complete callback three times and a poll: one SunoSucceeded; the first late copy
    and the poll are kept, the identical replay is counted.
    """
    state = run(*TASK_T1)
    log = []
    for command in [observe(ProviderStatus.SUCCESS, 100)] * 3 + [
        observe(ProviderStatus.SUCCESS, 101, source=Source.POLL)
    ]:
        events = decide(command, state)
        state = fold(events, state) if events else state
        log.extend(events)
    assert sum(isinstance(e, SunoSucceeded) for e in log) == 1
    assert [type(e).__name__ for e in log[1:]] == [
        "LateObservation",
        "ObservationRepeated",
        "LateObservation",
    ]
    assert (state.late_observations, state.repeated_observations) == (2, 1)


def test_callback_before_generate_answer_adopts_the_task() -> None:
    """A callback that beats the generate answer records the task, then the progress."""
    state = run(MarkRequestSent(at(1)), observe(ProviderStatus.TEXT_SUCCESS, 2))
    assert state.stage is Stage.SUNO_PENDING
    assert state.task_id == "t1"
    assert decide(RecordTaskCreated("t1", at(3)), state) == []


def test_other_task_is_a_mismatch() -> None:
    """An observation naming another task is recorded as task_mismatch."""
    state = run(*TASK_T1)
    events = decide(observe(ProviderStatus.SUCCESS, 5, task="t2"), state)
    assert [type(e) for e in events] == [LateObservation]
    assert events[0].reason == "task_mismatch"  # type: ignore[union-attr]


def test_out_of_order_progress_never_lowers_provider_status() -> None:
    """TEXT_SUCCESS after FIRST_SUCCESS is a heartbeat, but the status stays FIRST_SUCCESS."""
    state = run(
        *TASK_T1,
        observe(ProviderStatus.FIRST_SUCCESS, 40),
        observe(ProviderStatus.TEXT_SUCCESS, 41),
    )
    assert state.provider_status is ProviderStatus.FIRST_SUCCESS
    assert state.last_observed_at == at(41)
    assert state.observations == 2


def test_failure_status_fails_with_that_code() -> None:
    """SENSITIVE_WORD_ERROR from a poll ends in STAGE_90 with that error code."""
    state = run(
        *TASK_T1,
        observe(ProviderStatus.SENSITIVE_WORD_ERROR, 9),
    )
    assert state.stage is Stage.FAILED
    assert state.error_code == "SENSITIVE_WORD_ERROR"
    assert decide(FailJob("X", "again", at(10)), state) == []


def test_retry_and_uncertain_send_states() -> None:
    """A scheduled retry is due at retry_at; an uncertain send is nobody's work."""
    retry = run(MarkRequestSent(at(1)), ScheduleRetry("503", at(9), at(2)))
    assert retry.send_state is SendState.RETRY_WAIT
    assert (retry.work, retry.due_at) == (Work.SEND, at(9))
    again = decide(MarkRequestSent(at(9)), retry)
    assert again == [SunoRequestSent(2, at(9), "retry after a transient error")]
    never = JobPolicy(resend_uncertain_after_s=0)
    uncertain = run(MarkRequestSent(at(1)), MarkRequestUncertain("no answer", at(31)), policy=never)
    assert uncertain.work is None
    assert uncertain.deadline_at == at(601)  # 600 s after the last progress (sent at 1 s)
    assert decide(MarkRequestSent(at(40)), uncertain) == []


def test_an_uncertain_send_is_resent_once_after_the_delay() -> None:
    """An uncertain call is sent again resend_uncertain_after_s later (attempt 2, with its
    reason), and never a third time: at most two Suno tasks per job.
    """
    policy = JobPolicy(resend_uncertain_after_s=120)
    uncertain = run(
        MarkRequestSent(at(1)), MarkRequestUncertain("no answer", at(31)), policy=policy
    )
    assert (uncertain.work, uncertain.due_at) == (Work.SEND, at(151))
    assert decide(MarkRequestSent(at(150)), uncertain) == []
    (resent,) = decide(MarkRequestSent(at(151)), uncertain)
    assert isinstance(resent, SunoRequestSent) and resent.attempt == 2
    assert resent.reason is not None and "no callback named the job within 120 s" in resent.reason
    again = fold([resent, SunoRequestUncertain("no answer again", at(181))], uncertain)
    assert (again.resends, again.send_state, again.work) == (1, SendState.UNCERTAIN, None)
    assert decide(MarkRequestSent(at(1000)), again) == []
    # A callback of either task is adopted while no task is known; then the other is late.
    adopted = fold(decide(observe(ProviderStatus.TEXT_SUCCESS, 200, task="first"), again), again)
    assert adopted.task_id == "first" and adopted.stage is Stage.SUNO_PENDING
    late = decide(RecordTaskCreated("second", at(201)), adopted)
    assert [type(e).__name__ for e in late] == ["LateObservation"]


def test_poll_schedule_follows_the_policy() -> None:
    """First poll poll_after_s after the last callback, then every poll_interval_s (±20%)."""
    policy = JobPolicy(poll_after_s=30, poll_interval_s=15)
    created = run(*TASK_T1, policy=policy)
    assert created.work is Work.POLL
    assert created.due_at is not None
    assert at(2 + 24) <= created.due_at <= at(2 + 36)
    polled = run(
        *TASK_T1,
        observe(ProviderStatus.PENDING, 40, source=Source.POLL),
        policy=policy,
    )
    assert polled.due_at is not None
    assert at(40 + 12) <= polled.due_at <= at(40 + 18)


def test_clip_path_only_with_the_policy() -> None:
    """StartClip does nothing without clip_render; with it, STAGE_50 is not done."""
    plain = run(*TASK_T1, observe(ProviderStatus.SUCCESS, 3))
    assert decide(StartClip(at(4)), plain) == []
    clip = run(
        *TASK_T1,
        observe(ProviderStatus.SUCCESS, 3),
        StartClip(at(4)),
        policy=JobPolicy(clip_render=True),
    )
    assert clip.stage is Stage.CLIP_PROCESSING
    assert not clip.done
    assert clip.deadline_at is None
    assert decide(observe(ProviderStatus.SUCCESS, 5), clip)[0].reason == "duplicate"  # type: ignore[union-attr]


def test_fold_rejects_broken_logs() -> None:
    """A log not starting with JobAccepted, or breaking the graph, raises InvalidTransition."""
    with pytest.raises(InvalidTransition):
        fold([JobFailed("X", "y", T0)])
    with pytest.raises(InvalidTransition):
        fold([])
    state = run(MarkRequestSent(at(1)), FailJob("X", "stop", at(2)))
    with pytest.raises(InvalidTransition):
        fold([SunoSucceeded(Source.POLL, TRACKS, at(3))], state)


def test_heartbeat() -> None:
    """secondsSinceUpdate counts whole seconds; stale only when not done and over the limit."""
    state = run(MarkRequestSent(at(1)))
    assert state.heartbeat(at(61.9), 60).seconds_since_update == 60
    assert not state.heartbeat(at(61.9), 60).is_stale
    assert state.heartbeat(at(62), 60).is_stale
    done = run(MarkRequestSent(at(1)), FailJob("X", "stop", at(2)))
    assert not done.heartbeat(at(1000), 60).is_stale
