"""The workers against each Suno scenario, on the in-memory store with the scripted Suno."""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from datetime import timedelta

import pytest
from _workers_harness import (
    NO_POLL,
    ProgressingSuno,
    Rig,
    contiguous,
    event_types,
    wait_for_stage,
    wait_until,
)

from clipjobs import (
    InMemoryEventStore,
    JobPolicy,
    JobState,
    LoopLimits,
    ProviderStatus,
    SendState,
    Stage,
)
from clipjobs.domain.errors import (
    SunoNoCredits,
    SunoRateLimited,
    SunoRejected,
    SunoTransient,
)
from clipjobs.domain.i18n import timeout_message

pytestmark = pytest.mark.asyncio


@pytest.fixture
def store() -> InMemoryEventStore:
    return InMemoryEventStore()


async def test_callbacks_only(store: InMemoryEventStore) -> None:
    """With callbacks and no polling due, the sender sends at once and callbacks alone reach
    STAGE_50.
    """
    suno = ProgressingSuno()
    rig = Rig(store, suno, policy=NO_POLL)
    async with rig.workers():
        job = await rig.start()
        sent = await wait_for_stage(store, job.job_id, Stage.SUNO_TASK_CREATED)
        assert sent.task_id is not None
        for status in (
            ProviderStatus.TEXT_SUCCESS,
            ProviderStatus.FIRST_SUCCESS,
            ProviderStatus.SUCCESS,
        ):
            await rig.callback(job.job_id, sent.task_id, status)
        done = await wait_for_stage(store, job.job_id, Stage.SUNO_SUCCESS)
    assert done.done and done.audio_url
    assert suno.polled == []
    assert len(suno.generated) == 1
    await rig.aclose()


async def test_no_callbacks_poll_fallback_reaches_success(store: InMemoryEventStore) -> None:
    """Without any callback the poller walks the job through record-info to STAGE_50."""
    suno = ProgressingSuno()
    rig = Rig(store, suno)
    async with rig.workers():
        job = await rig.start()
        done = await wait_for_stage(store, job.job_id, Stage.SUNO_SUCCESS)
    history = await store.read(job.job_id)
    types = event_types(history)
    assert types[:3] == ["JobAccepted", "SunoRequestSent", "SunoTaskCreated"]
    assert types[-1] == "SunoSucceeded"
    assert types.count("SunoProgressObserved") == 3  # PENDING, TEXT_SUCCESS, FIRST_SUCCESS
    assert all(getattr(r.event, "source", "poll") == "poll" for r in history[3:])
    assert done.tracks and contiguous(history)
    await rig.aclose()


async def test_duplicated_shuffled_callbacks_racing_the_poller(store: InMemoryEventStore) -> None:
    """Duplicated, shuffled callbacks racing the poller on many jobs record exactly one
    SunoSucceeded each.
    """
    suno = ProgressingSuno(path=(ProviderStatus.PENDING, ProviderStatus.SUCCESS))
    rig = Rig(store, suno, policy=JobPolicy(timeout_s=60, poll_after_s=0.0, poll_interval_s=0.01))
    rng = random.Random(42)
    async with rig.workers(poll=LoopLimits(batch=50, concurrency=16)):
        jobs = [await rig.start(f"channel_{i}") for i in range(20)]
        tasks = []
        for job in jobs:
            state = await wait_for_stage(
                store,
                job.job_id,
                Stage.SUNO_TASK_CREATED,
                Stage.SUNO_PENDING,
                Stage.SUNO_SUCCESS,
            )
            assert state.task_id is not None
            statuses = [
                ProviderStatus.TEXT_SUCCESS,
                ProviderStatus.FIRST_SUCCESS,
                ProviderStatus.SUCCESS,
            ] * 3
            rng.shuffle(statuses)
            tasks += [rig.callback(job.job_id, state.task_id, s) for s in statuses]
        rng.shuffle(tasks)
        await asyncio.gather(*tasks)
        for job in jobs:
            await wait_for_stage(store, job.job_id, Stage.SUNO_SUCCESS)
        await asyncio.sleep(0.1)  # let the poller race the finished jobs a little more
    for job in jobs:
        history = await store.read(job.job_id)
        assert event_types(history).count("SunoSucceeded") == 1, event_types(history)
        assert contiguous(history)
        assert (await store.load(job.job_id)).stage is Stage.SUNO_SUCCESS  # type: ignore[union-attr]
    assert len(suno.generated) == 20
    await rig.aclose()


async def test_stuck_job_times_out_exactly_once(store: InMemoryEventStore) -> None:
    """A task Suno never finishes times out once at the deadline; a late success is kept but changes
    nothing.
    """
    suno = ProgressingSuno(path=(ProviderStatus.PENDING,))
    rig = Rig(store, suno, policy=JobPolicy(timeout_s=1, poll_after_s=0.05, poll_interval_s=0.05))
    async with rig.workers():
        job = await rig.start()
        pending = await wait_for_stage(store, job.job_id, Stage.SUNO_PENDING)
        # While the poller observes it, the heartbeat stays fresh.
        assert not pending.heartbeat(rig.clock.now(), 60).is_stale
        timed_out = await wait_for_stage(store, job.job_id, Stage.TIMEOUT)
        await asyncio.sleep(0.2)  # the sweeper keeps running: nothing more may happen
    # The seed's text (N is the job's timeout in minutes, formatted by clipjobs.domain.i18n).
    assert timed_out.error_text("ru") == timeout_message(1, "ru", idle=True)
    assert (timed_out.error_text("ru") or "").startswith("Превышено время ожидания генерации (")
    assert timed_out.error_code == "JOB_TIMEOUT"
    assert timed_out.task_id is not None
    result = await rig.callback(job.job_id, timed_out.task_id, ProviderStatus.SUCCESS)
    assert result.value == "late"
    history = await store.read(job.job_id)
    assert event_types(history).count("JobTimedOut") == 1
    assert event_types(history)[-1] == "LateObservation"
    final = await store.load(job.job_id)
    assert final is not None and final.stage is Stage.TIMEOUT
    await rig.aclose()


async def test_heartbeat_goes_stale_while_nobody_observes(store: InMemoryEventStore) -> None:
    """When Suno cannot be reached nothing is recorded, so the heartbeat goes stale after 60 s."""
    suno = ProgressingSuno(path=(ProviderStatus.PENDING,))
    rig = Rig(store, suno)
    async with rig.workers():
        job = await rig.start()
        created = await wait_for_stage(store, job.job_id, Stage.SUNO_TASK_CREATED)
        suno.poll_errors.extend(SunoTransient("HTTP 503", code=503) for _ in range(1000))
        polled = len(suno.polled)
        await wait_until(lambda: len(suno.polled) >= polled + 3, what="failing polls")
        state = await store.load(job.job_id)
    assert state is not None
    # Failed polls record nothing: the job's last event is still the task creation...
    assert state.version == created.version
    later = state.updated_at + timedelta(seconds=61)
    # ...so a minute later anyone looking sees it stale, and the history says why.
    assert state.heartbeat(later, 60).is_stale
    assert not state.heartbeat(state.updated_at + timedelta(seconds=59), 60).is_stale
    await rig.aclose()


async def _failed(store: InMemoryEventStore, suno: ProgressingSuno) -> JobState:
    """The job the workers started over ``suno``, once it failed."""
    rig = Rig(store, suno)
    async with rig.workers():
        job = await rig.start()
        failed = await wait_for_stage(store, job.job_id, Stage.FAILED)
    await rig.aclose()
    return failed


@pytest.mark.parametrize(
    "path",
    [
        (ProviderStatus.PENDING, ProviderStatus.GENERATE_AUDIO_FAILED),
        (ProviderStatus.SENSITIVE_WORD_ERROR,),
    ],
    ids=["generate-audio-failed", "sensitive-word"],
)
async def test_a_failure_from_record_info_fails_the_job_with_its_code(
    store: InMemoryEventStore, path: tuple[ProviderStatus, ...]
) -> None:
    """GENERATE_AUDIO_FAILED or SENSITIVE_WORD_ERROR from record-info ends the job in STAGE_90
    with that code, named in the message too.
    """
    failed = await _failed(store, ProgressingSuno(path=path))
    code = path[-1].value
    assert failed.error_code == code
    assert code in (failed.error_message or "")


async def test_failed_generation_via_callback(store: InMemoryEventStore) -> None:
    """A CREATE_TASK_FAILED callback fails the job even though the poller never ran."""
    suno = ProgressingSuno()
    rig = Rig(store, suno, policy=NO_POLL)
    async with rig.workers():
        job = await rig.start()
        sent = await wait_for_stage(store, job.job_id, Stage.SUNO_TASK_CREATED)
        assert sent.task_id is not None
        await rig.callback(job.job_id, sent.task_id, ProviderStatus.CREATE_TASK_FAILED)
        failed = await wait_for_stage(store, job.job_id, Stage.FAILED)
    assert failed.error_code == "CREATE_TASK_FAILED"
    await rig.aclose()


@pytest.mark.parametrize(
    ("error", "code", "says"),
    [
        # No credits is told in the service's own words, not Suno's.
        (SunoNoCredits("insufficient credits", code=429), "SUNO_NO_CREDITS", None),
        (SunoRejected("prompt too long (code 413)", code=413), "SUNO_REJECTED", "prompt too long"),
    ],
    ids=["no-credits", "rejected-params"],
)
async def test_a_refused_generate_fails_the_job_without_a_retry(
    store: InMemoryEventStore, error: Exception, code: str, says: str | None
) -> None:
    """A 429 (no credits) or a 413 (rejected params, with Suno's message) to the generate call
    fails the job with its code, and is not retried.
    """
    suno = ProgressingSuno()
    suno.generate_errors.append(error)
    failed = await _failed(store, suno)
    assert failed.error_code == code
    if says is not None:
        assert says in (failed.error_message or "")
    assert suno.generated == []
    assert event_types(await store.read(failed.job_id)).count("SunoRequestSent") == 1


async def test_transient_errors_are_retried_with_backoff_then_succeed(
    store: InMemoryEventStore,
) -> None:
    """Two 503s to the generate call are retried after a backoff, and the third attempt creates the
    task.
    """
    suno = ProgressingSuno()
    suno.generate_errors += [
        SunoTransient("HTTP 503", code=503),
        SunoTransient("maintenance", code=455),
    ]
    rig = Rig(store, suno, policy=NO_POLL)
    async with rig.workers():
        job = await rig.start()
        created = await wait_for_stage(store, job.job_id, Stage.SUNO_TASK_CREATED)
    history = await store.read(job.job_id)
    types = event_types(history)
    assert types.count("SunoRequestRetryScheduled") == 2
    assert types.count("SunoRequestSent") == 3
    retries = [r.event for r in history if type(r.event).__name__ == "SunoRequestRetryScheduled"]
    assert all(e.retry_at > e.at for e in retries)  # type: ignore[attr-defined]
    assert len(suno.generated) == 1 and created.send_attempts == 3
    await rig.aclose()


async def test_rate_limited_slows_everything_and_loses_no_job(store: InMemoryEventStore) -> None:
    """430 answers to generate and record-info pause and halve the budget, and every job still
    succeeds.
    """
    suno = ProgressingSuno()
    suno.generate_errors.append(SunoRateLimited("call frequency too high", code=430))
    suno.poll_errors += [SunoRateLimited("call frequency too high", code=430)]
    rig = Rig(store, suno, max_rps=200.0, window_s=0.1)
    rig.budget.backoff = timedelta(seconds=0.2)
    rig.budget.recover = timedelta(seconds=0.5)
    async with rig.workers():
        jobs = [await rig.start(f"channel_{i}") for i in range(10)]
        for job in jobs:
            await wait_for_stage(store, job.job_id, Stage.SUNO_SUCCESS)
    assert rig.budget.slowdowns >= 1
    starts = [r.started_at for r in rig.budget.history]
    # The pause shows as a gap no call crossed (polls are otherwise due every 0.05 s).
    assert max(b - a for a, b in itertools.pairwise(starts)) >= timedelta(seconds=0.19)
    assert rig.budget.peak() <= rig.budget.limit
    assert len(suno.generated) == 10
    await rig.aclose()


async def test_a_failing_step_is_logged_with_the_job_and_the_loop_lives_on(
    store: InMemoryEventStore, caplog: pytest.LogCaptureFixture
) -> None:
    """A poll error is logged on clipjobs.pipeline with job_id, stage and request_id, and polling
    goes on.
    """
    suno = ProgressingSuno()
    suno.poll_errors.append(SunoTransient("HTTP 502", code=502))
    rig = Rig(store, suno)
    with caplog.at_level(logging.WARNING, logger="clipjobs.pipeline"):
        async with rig.workers():
            job = await rig.start()
            await wait_for_stage(store, job.job_id, Stage.SUNO_SUCCESS)
    (record,) = [r for r in caplog.records if "poll failed" in r.getMessage()]
    assert record.name == "clipjobs.pipeline"
    assert record.job_id == job.job_id  # type: ignore[attr-defined]
    assert record.stage == Stage.SUNO_TASK_CREATED.value  # type: ignore[attr-defined]
    assert record.request_id == job.request_id  # type: ignore[attr-defined]
    assert (
        rig.service.metrics.value("clipjobs_worker_steps_total", work="poll", result="error") == 1
    )
    await rig.aclose()


async def test_a_new_job_wakes_the_sender_at_once(store: InMemoryEventStore) -> None:
    """A new STAGE_10 job is sent without waiting for the sender's idle interval."""
    suno = ProgressingSuno()
    rig = Rig(store, suno, policy=NO_POLL)
    async with rig.workers(idle_s=3600.0):
        await asyncio.sleep(0.05)  # the sender has found nothing and sleeps for an hour
        job = await rig.start()
        created = await wait_for_stage(store, job.job_id, Stage.SUNO_TASK_CREATED)
    assert created.send_state is SendState.ACKNOWLEDGED
    await rig.aclose()
