"""Acting on a job (SPEC 10.2) in the service: cancel, retry, re-render, the progress timeout."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from _core_harness import make_service

from clipjobs import (
    CallbackResult,
    ClipStep,
    FakeClock,
    InMemoryEventStore,
    JobCancelled,
    JobPolicy,
    JobRequest,
    JobRetried,
    JobService,
    JobState,
    JobTimedOut,
    LateObservation,
    ProviderStatus,
    Stage,
    SunoSucceeded,
)
from clipjobs.app.ports import StepReporter
from clipjobs.domain.errors import (
    InvalidRequest,
    JobAlreadyFinished,
    JobAlreadyRunning,
    JobNotFound,
    JobNotRetryable,
    PostProcessError,
    TooManyJobs,
)
from clipjobs.domain.events import Source, TimeoutLimit
from clipjobs.testing import ScriptedSuno

pytestmark = pytest.mark.asyncio


class BlockingRenderer:
    """A post-processor that renders until it is stopped, or fails when told to."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.stopped = False
        self.fail = False
        self.finish = asyncio.Event()
        self.rendered: list[str] = []

    async def process(self, job: JobState, report: StepReporter) -> str:
        await report(ClipStep.RENDERING)
        self.started.set()
        if self.fail:
            raise PostProcessError("CLIP_RENDER_FAILED", "ffmpeg exited 1")
        try:
            await self.finish.wait()
        except asyncio.CancelledError:
            self.stopped = True
            raise
        self.rendered.append(job.job_id)
        return f"/media/{job.job_id}.mp4"


def make(
    *, clip: bool = False, renderer: BlockingRenderer | None = None, **policy: Any
) -> tuple[JobService, InMemoryEventStore, ScriptedSuno, FakeClock]:
    return make_service(
        ScriptedSuno(), post_processor=renderer, policy=JobPolicy(clip_render=clip, **policy)
    )


async def _callback(
    service: JobService, suno: ScriptedSuno, job: JobState, status: ProviderStatus
) -> CallbackResult:
    task = job.task_id
    assert task is not None
    return await service.handle_callback(
        job.job_id, service.signer.token(job.job_id), suno.callback(task, status)
    )


async def _log(store: InMemoryEventStore, job_id: str) -> list[object]:
    return [r.event for r in await store.read(job_id)]


async def _at_stage(service: JobService, suno: ScriptedSuno, stage: Stage) -> JobState:
    job = (await service.start_job(JobRequest("ch", "u1"))).job
    if stage is Stage.REQUEST_ACCEPTED:
        return job
    job = await service.send(job.job_id)
    if stage is Stage.SUNO_TASK_CREATED:
        return job
    job = await _progress(service, suno, job, ProviderStatus.PENDING)
    if stage is Stage.SUNO_PENDING:
        return job
    await _callback(service, suno, job, ProviderStatus.SUCCESS)
    return await service.get(job.job_id, "u1")


async def _progress(
    service: JobService, suno: ScriptedSuno, job: JobState, status: ProviderStatus
) -> JobState:
    await _callback(service, suno, job, status)
    return await service.get(job.job_id, "u1")


@pytest.mark.parametrize(
    "stage", [Stage.REQUEST_ACCEPTED, Stage.SUNO_TASK_CREATED, Stage.SUNO_PENDING]
)
async def test_cancel_in_each_generating_stage_then_nothing_is_sent_or_polled(stage: Stage) -> None:
    """A cancel ends the job in STAGE_98; the sender and poller then do nothing, and a later
    callback is a late observation."""
    service, store, suno, _ = make()
    job = await _at_stage(service, suno, stage)
    assert job.stage is stage
    cancelled = await service.cancel(job.job_id, by="u1", reason="wrong prompt")
    assert cancelled.stage is Stage.CANCELLED and cancelled.done
    assert cancelled.cancelled_by == "u1" and cancelled.error_message == "wrong prompt"
    assert cancelled.work is None and cancelled.deadline_at is None and cancelled.retryable
    assert cancelled.error_text("en") == "Job cancelled: wrong prompt"
    assert cancelled.progress_text("ru") == "Отменено"
    calls = (len(suno.generated), len(suno.polled))
    await service.send(job.job_id)
    await service.poll(job.job_id)
    assert (len(suno.generated), len(suno.polled)) == calls
    if job.task_id is not None:
        assert await _callback(service, suno, job, ProviderStatus.SUCCESS) is CallbackResult.LATE
    log = await _log(store, job.job_id)
    assert sum(isinstance(e, JobCancelled) for e in log) == 1
    assert not any(isinstance(e, SunoSucceeded) for e in log)
    # Again: the same answer, nothing new.
    again = await service.cancel(job.job_id, by="u1")
    assert again.version == (await service.get(job.job_id, "u1")).version


async def test_cancel_a_finished_job_is_refused_and_changes_nothing() -> None:
    service, _store, suno, _ = make()
    job = await _at_stage(service, suno, Stage.SUNO_SUCCESS)
    assert job.stage is Stage.SUNO_SUCCESS and job.done
    with pytest.raises(JobAlreadyFinished) as info:
        await service.cancel(job.job_id, by="u1")
    assert info.value.stage == "STAGE_50_SUNO_SUCCESS"
    assert (await service.get(job.job_id, "u1")).version == job.version
    with pytest.raises(JobNotFound):
        await service.cancel("job_1_nosuchjob", by="u1")
    with pytest.raises(InvalidRequest):
        await service.cancel(job.job_id, by="u1", reason="x" * 501)


async def test_cancel_racing_success_has_exactly_one_winner() -> None:
    """The version check decides: 50 races, one terminal event each, and the loser knows."""
    for _ in range(50):
        service, store, suno, _ = make()
        job = await _at_stage(service, suno, Stage.SUNO_PENDING)
        results = await asyncio.gather(
            service.cancel(job.job_id, by="u1"),
            _callback(service, suno, job, ProviderStatus.SUCCESS),
            return_exceptions=True,
        )
        final = await service.get(job.job_id, "u1")
        log = await _log(store, job.job_id)
        terminal = [e for e in log if isinstance(e, JobCancelled | SunoSucceeded)]
        assert len(terminal) == 1
        if final.stage is Stage.CANCELLED:
            assert results[1] is CallbackResult.LATE
        else:
            assert final.stage is Stage.SUNO_SUCCESS
            assert isinstance(results[0], JobAlreadyFinished)


async def test_cancel_mid_render_stops_the_render() -> None:
    """A render under way is stopped when its job is cancelled; no clip is recorded."""
    renderer = BlockingRenderer()
    service, _store, suno, _ = make(clip=True, renderer=renderer)
    job = await _at_stage(service, suno, Stage.SUNO_SUCCESS)
    rendering = asyncio.create_task(service.render(job.job_id))
    await renderer.started.wait()
    assert (await service.get(job.job_id, "u1")).stage is Stage.CLIP_PROCESSING
    await service.cancel(job.job_id, by="u1", reason="changed my mind")
    final = await asyncio.wait_for(rendering, 10)  # a bound for a hang, not a timing
    assert final.stage is Stage.CANCELLED and final.clip_step is None
    assert renderer.stopped and renderer.rendered == []
    # A job cancelled before its render starts is never rendered.
    other = await _at_stage(service, suno, Stage.SUNO_SUCCESS)
    await service.cancel(other.job_id, by="u1")
    renderer.started.clear()
    assert (await service.render(other.job_id)).stage is Stage.CANCELLED
    assert not renderer.started.is_set()


async def test_retry_after_failure_and_from_the_clip_without_suno() -> None:
    renderer = BlockingRenderer()
    renderer.fail = True
    service, store, suno, _ = make(clip=True, renderer=renderer)
    job = await _at_stage(service, suno, Stage.SUNO_SUCCESS)
    failed = await service.render(job.job_id)
    assert failed.stage is Stage.FAILED and failed.retryable and failed.can_rerender
    calls = (len(suno.generated), len(suno.polled), suno.credit_checks)

    renderer.fail = False
    renderer.finish.set()
    outcome = await service.retry(job.job_id, "u1", mode="clip")
    child = outcome.job
    assert outcome.created and child.retry_of == job.job_id
    assert child.stage is Stage.SUNO_SUCCESS and child.tracks == failed.tracks
    log = await _log(store, child.job_id)
    assert [type(e).__name__ for e in log] == ["JobAccepted", "SunoSucceeded"]
    assert isinstance(log[1], SunoSucceeded) and log[1].source is Source.REUSED
    assert (await service.render(child.job_id)).stage is Stage.CLIP_READY
    assert (len(suno.generated), len(suno.polled), suno.credit_checks) == calls
    parent = await service.get(job.job_id, "u1")
    assert parent.retried_by == child.job_id and parent.version == failed.version + 1
    assert isinstance((await _log(store, job.job_id))[-1], JobRetried)


async def test_retry_rules() -> None:
    service, _store, suno, _ = make()
    running = await _at_stage(service, suno, Stage.SUNO_PENDING)
    with pytest.raises(JobNotRetryable):
        await service.retry(running.job_id, "u1")
    with pytest.raises(InvalidRequest):
        await service.retry(running.job_id, "u1", mode="middle")
    with pytest.raises(JobNotFound):
        await service.retry(running.job_id, "someone-else")
    await service.cancel(running.job_id, by="u1")
    with pytest.raises(JobNotRetryable):  # no post-processor, no song: nothing to re-render
        await service.retry(running.job_id, "u1", mode="clip")
    # The channel rule: a second retry while the first runs is JOB_ALREADY_RUNNING.
    first = await service.retry(running.job_id, "u1", idempotency_key="k1")
    assert first.created and first.job.params == running.params
    assert (await service.retry(running.job_id, "u1", idempotency_key="k1")).job == first.job
    with pytest.raises(JobAlreadyRunning):
        await service.retry(running.job_id, "u1")
    assert (await service.get(running.job_id, "u1")).retried_by == first.job.job_id


async def test_a_job_making_progress_outlives_its_timeout() -> None:
    """Progress every 100 s keeps a job with a 150 s timeout alive past 600 s; silence then
    times it out, and the age limit fires however much progress is made."""
    service, store, suno, clock = make(timeout_s=150, max_s=1800)
    job = await _at_stage(service, suno, Stage.SUNO_TASK_CREATED)
    statuses = [ProviderStatus.PENDING, ProviderStatus.TEXT_SUCCESS, ProviderStatus.FIRST_SUCCESS]
    for step in range(7):
        await clock.advance(100)
        await service.sweep(job.job_id)
        if step < len(statuses):
            job = await _progress(service, suno, job, statuses[step])
        else:  # news from Suno: the first tracks' previews change
            await service.execute(job.job_id, _tracks_observed(job, step))
    state = await service.get(job.job_id, "u1")
    assert state.stage is Stage.SUNO_PENDING
    assert (clock.now() - state.created_at).total_seconds() >= 700
    await clock.advance(151)
    timed_out = await service.sweep(job.job_id)
    assert timed_out.stage is Stage.TIMEOUT and timed_out.timeout_limit is TimeoutLimit.PROGRESS
    assert (timed_out.error_text("en") or "").endswith("no progress for 2.5 minutes.")
    assert "не сообщал о прогрессе 2.5 минут" in (timed_out.error_text("ru") or "")
    log = await _log(store, job.job_id)
    assert isinstance(log[-1], JobTimedOut) and log[-1].timeout_s == 150


async def test_the_age_limit_fires_despite_progress() -> None:
    service, _store, suno, clock = make(timeout_s=150, max_s=300)
    job = await _at_stage(service, suno, Stage.SUNO_TASK_CREATED)
    await clock.advance(100)
    job = await _progress(service, suno, job, ProviderStatus.PENDING)
    await clock.advance(100)
    job = await _progress(service, suno, job, ProviderStatus.TEXT_SUCCESS)
    await clock.advance(100)
    timed_out = await service.sweep(job.job_id)
    assert timed_out.stage is Stage.TIMEOUT and timed_out.timeout_limit is TimeoutLimit.AGE
    assert "5 minutes in all" in (timed_out.error_text("en") or "")
    # A retry after a timeout starts the job again.
    retried = await service.retry(job.job_id, "u1")
    assert retried.job.retry_of == job.job_id and retried.job.stage is Stage.REQUEST_ACCEPTED


async def test_a_repeated_poll_is_not_progress() -> None:
    """Polls saying the same status do not keep a stuck job alive."""
    service, _store, suno, clock = make(timeout_s=150, max_s=1800)
    job = await _at_stage(service, suno, Stage.SUNO_TASK_CREATED)
    for _ in range(4):  # the first poll moves it to STAGE_40 (at 60 s); the rest say the same
        await clock.advance(60)
        await service.poll(job.job_id)
    state = await service.sweep(job.job_id)
    assert state.stage is Stage.TIMEOUT and state.timeout_limit is TimeoutLimit.PROGRESS


def _tracks_observed(job: JobState, n: int):  # type: ignore[no-untyped-def]
    from clipjobs import Observation, Track
    from clipjobs.domain.commands import RecordObservation

    task = job.task_id
    assert task is not None
    obs = Observation(
        task, ProviderStatus.FIRST_SUCCESS, (Track(f"t{n}", stream_audio_url=f"s{n}"),)
    )
    return lambda at: RecordObservation(obs, Source.CALLBACK, at)


async def test_late_observation_after_cancel_is_kept() -> None:
    service, store, suno, _ = make()
    job = await _at_stage(service, suno, Stage.SUNO_TASK_CREATED)
    await service.cancel(job.job_id, by="u1")
    await _callback(service, suno, job, ProviderStatus.SUCCESS)
    log = await _log(store, job.job_id)
    assert isinstance(log[-1], LateObservation) and log[-1].reason == "after_terminal"


async def test_retry_follows_the_caps_and_no_credits_is_not_retryable_while_at_zero() -> None:
    service, _store, suno, clock = make_service(ScriptedSuno(credits=0), max_active_per_user=1)
    broke = (await service.start_job(JobRequest("ch", "u1"))).job
    assert broke.error_code == "SUNO_NO_CREDITS" and broke.retryable
    assert service.retryable(broke) is False  # Suno said 0 credits a moment ago
    suno.credits_left = 5
    await clock.advance(60)
    await service.start_job(JobRequest("other", "u1"))  # asks Suno again: credits now
    assert service.retryable(broke) is True
    with pytest.raises(TooManyJobs):  # the running job on "other" fills the cap of 1
        await service.retry(broke.job_id, "u1")
    assert (await service.get(broke.job_id, "u1")).retried_by is None
