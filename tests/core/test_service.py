"""JobService over the in-memory store and the scripted Suno."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from _core_harness import make_service

from clipjobs import (
    CallbackResult,
    FakeClock,
    GenerationParams,
    InMemoryEventStore,
    JobPolicy,
    JobRequest,
    JobService,
    ParamOverrides,
    ProviderStatus,
    SendState,
    Stage,
    StartOutcome,
    SunoSucceeded,
    Unauthorized,
)
from clipjobs.domain.errors import (
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    InvalidRequest,
    JobAlreadyRunning,
    JobNotFound,
    SunoNoCredits,
    SunoProtocolError,
    SunoRejected,
    SunoTransient,
)
from clipjobs.testing import ScriptedSuno

pytestmark = pytest.mark.asyncio


class HangingSuno(ScriptedSuno):
    """A Suno whose generate call never answers (while ``hang``): the caller's process dies."""

    def __init__(self) -> None:
        super().__init__()
        self.hang = True
        self.called = asyncio.Event()

    async def generate(self, params: GenerationParams, callback_url: str) -> str:
        self.called.set()
        if self.hang:
            await asyncio.Event().wait()
        return await super().generate(params, callback_url)


def make(
    suno: ScriptedSuno | None = None, **config: Any
) -> tuple[JobService, InMemoryEventStore, ScriptedSuno, FakeClock]:
    return make_service(suno or ScriptedSuno(), **config)


async def test_start_send_callback_success() -> None:
    """A job walks 10 → 20 → 30 → 40 → 50 through send and callbacks."""
    service, _store, suno, _clock = make()
    outcome = await service.start_job(JobRequest("channel_xyz", "u1"))
    job = outcome.job
    assert outcome.created
    assert job.stage is Stage.REQUEST_ACCEPTED
    assert job.job_id.startswith("job_")
    sent = await service.send(job.job_id)
    assert sent.stage is Stage.SUNO_TASK_CREATED
    ((_, callback_url, task_id),) = suno.generated
    assert callback_url.startswith("https://clips.example/api/webhooks/suno/music?job=")
    token = service.signer.token(job.job_id)
    assert f"token={token}" in callback_url
    assert (
        await service.handle_callback(
            job.job_id, token, suno.callback(task_id, ProviderStatus.TEXT_SUCCESS)
        )
        is CallbackResult.RECORDED
    )
    assert (
        await service.handle_callback(
            job.job_id, token, suno.callback(task_id, ProviderStatus.SUCCESS)
        )
        is CallbackResult.RECORDED
    )
    assert (
        await service.handle_callback(
            job.job_id, token, suno.callback(task_id, ProviderStatus.SUCCESS)
        )
        is CallbackResult.LATE
    )
    final = await service.get(job.job_id, "u1")
    assert final.stage is Stage.SUNO_SUCCESS
    assert final.audio_url
    history = await service.history(job.job_id, "u1")
    assert [r.version for r in history] == list(range(1, final.version + 1))
    assert (
        service.metrics.value("clipjobs_jobs_finished_total", stage=Stage.SUNO_SUCCESS.value) == 1
    )
    assert service.metrics.value("clipjobs_callbacks_total", result="late") == 1


async def test_owner_only() -> None:
    """Another user's job is not found, exactly like a missing one."""
    service, *_ = make()
    job = (await service.start_job(JobRequest("ch", "u1"))).job
    with pytest.raises(JobNotFound):
        await service.get(job.job_id, "u2")
    with pytest.raises(JobNotFound):
        await service.history(job.job_id, "u2")


async def test_bad_input_writes_nothing() -> None:
    """Bad channel ids, over-long prompts and bad idempotency keys are refused, storing nothing."""
    service, store, *_ = make()
    with pytest.raises(InvalidRequest) as info:
        await service.start_job(JobRequest("bad channel!", "u1"))
    assert info.value.field == "channelId"
    with pytest.raises(InvalidRequest) as info:
        await service.start_job(JobRequest("ch", "u1", ParamOverrides(prompt="x" * 6000)))
    assert info.value.field == "prompt"
    with pytest.raises(InvalidRequest):
        await service.start_job(JobRequest("ch", "u1", idempotency_key="with space"))
    assert await store.count_active() == 0


async def test_idempotency_key() -> None:
    """Same user, key and body: the same job; same key, other body: IdempotencyKeyReused."""
    service, *_ = make(one_job_per_channel=False)
    first = await service.start_job(JobRequest("ch", "u1", idempotency_key="k-1"))
    again = await service.start_job(JobRequest("ch", "u1", idempotency_key="k-1"))
    assert again.job.job_id == first.job.job_id
    assert not again.created
    with pytest.raises(IdempotencyKeyReused):
        await service.start_job(
            JobRequest("ch", "u1", ParamOverrides(prompt="other"), idempotency_key="k-1")
        )
    other_user = await service.start_job(JobRequest("ch", "u2", idempotency_key="k-1"))
    assert other_user.job.job_id != first.job.job_id


async def test_concurrent_idempotent_requests_make_one_job() -> None:
    """Ten concurrent requests with one key make one job; the rest get it or IdempotencyKeyInUse."""
    for exclusive in (False, True):
        service, *_ = make(one_job_per_channel=exclusive)
        results = await asyncio.gather(
            *(service.start_job(JobRequest("ch", "u1", idempotency_key="same")) for _ in range(10)),
            return_exceptions=True,
        )
        made = [r for r in results if isinstance(r, StartOutcome) and r.created]
        assert len(made) == 1
        for result in results:
            if isinstance(result, StartOutcome):
                assert result.job.job_id == made[0].job.job_id
            else:
                assert isinstance(result, IdempotencyKeyInUse), result
                assert result.job_id == made[0].job.job_id


async def test_double_click_is_409() -> None:
    """A second run on a busy channel raises JobAlreadyRunning with the running job's id."""
    service, *_ = make()
    first = await service.start_job(JobRequest("ch", "u1"))
    with pytest.raises(JobAlreadyRunning) as info:
        await service.start_job(JobRequest("ch", "u1"))
    assert info.value.job_id == first.job.job_id
    results = await asyncio.gather(
        *(service.start_job(JobRequest("ch2", "u1")) for _ in range(5)), return_exceptions=True
    )
    assert sum(not isinstance(r, Exception) for r in results) == 1


async def test_no_callback_url_fails_at_once() -> None:
    """Without PUBLIC_BASE_URL the job is created and failed, and the caller gets its id."""
    service, *_ = make(callback_base_url=None)
    outcome = await service.start_job(JobRequest("ch", "u1"))
    assert outcome.failed_at_once == "CALLBACK_URL_NOT_CONFIGURED"
    assert outcome.job.done


async def test_no_credits_fails_at_once_and_a_top_up_counts_within_seconds() -> None:
    """Zero credits: the job is created and failed; the 0 is trusted for 3 s only, so a top-up
    counts at once for the user who just paid, while a positive count is trusted for 30 s.
    """
    suno = ScriptedSuno(credits=0)
    service, _store, _, clock = make(suno, one_job_per_channel=False)
    first = await service.start_job(JobRequest("ch", "u1"))
    assert first.failed_at_once == "SUNO_NO_CREDITS"
    suno.credits_left = 5
    await clock.advance(2.9)
    second = await service.start_job(JobRequest("ch", "u1"))
    assert second.failed_at_once == "SUNO_NO_CREDITS"  # the 0, asked 2.9 s ago
    await clock.advance(0.2)
    third = await service.start_job(JobRequest("ch", "u1"))
    assert third.failed_at_once is None  # asked again: 5
    suno.credits_left = 0
    await clock.advance(29.0)
    assert (await service.start_job(JobRequest("ch", "u1"))).failed_at_once is None
    await clock.advance(1.1)
    assert (await service.start_job(JobRequest("ch", "u1"))).failed_at_once == "SUNO_NO_CREDITS"


async def test_a_generate_answered_no_credits_makes_the_next_run_once_answer_402() -> None:
    """A generate that gets 429 fails its job and sets the cached count to 0, so the next
    runOnce fails at once without asking Suno (until 3 s have passed).
    """
    suno = ScriptedSuno()
    service, _store, _, clock = make(suno, one_job_per_channel=False)
    job = (await service.start_job(JobRequest("ch", "u1"))).job  # credits 100, cached
    suno.generate_errors.append(SunoNoCredits("insufficient credits", code=429))
    failed = await service.send(job.job_id)
    assert (failed.stage, failed.error_code) == (Stage.FAILED, "SUNO_NO_CREDITS")
    asked = suno.credit_checks
    assert (await service.start_job(JobRequest("ch", "u1"))).failed_at_once == "SUNO_NO_CREDITS"
    assert suno.credit_checks == asked  # no Suno call spent on it
    await clock.advance(3.1)
    assert (await service.start_job(JobRequest("ch", "u1"))).failed_at_once is None


async def test_slow_credit_check_does_not_block() -> None:
    """A credit check slower than its limit is skipped and the job proceeds."""
    suno = ScriptedSuno()

    async def slow() -> int:
        await asyncio.sleep(5)
        return 0

    suno.credits = slow  # type: ignore[method-assign]
    service, *_ = make(suno, credit_check_timeout_s=0.05)
    outcome = await service.start_job(JobRequest("ch", "u1"))
    assert outcome.failed_at_once is None


async def test_send_errors() -> None:
    """No credits/rejections fail; transient errors retry; unknown answers are uncertain."""
    suno = ScriptedSuno()
    # No credit cache: a 429 from generate must not make the next start fail at once.
    service, _store, _, clock = make(
        suno, one_job_per_channel=False, credit_cache_s=0, credit_zero_cache_s=0
    )

    async def job_after(error: Exception) -> object:
        job = (await service.start_job(JobRequest("ch", "u1"))).job
        suno.generate_errors.append(error)  # type: ignore[arg-type]
        return await service.send(job.job_id)

    no_credits = await job_after(SunoNoCredits("no", code=429))
    assert (no_credits.stage, no_credits.error_code) == (Stage.FAILED, "SUNO_NO_CREDITS")  # type: ignore[attr-defined]
    rejected = await job_after(SunoRejected("prompt too long", code=413))
    assert rejected.error_code == "SUNO_REJECTED"  # type: ignore[attr-defined]
    assert "prompt too long" in rejected.error_message  # type: ignore[attr-defined]
    unreadable = await job_after(SunoProtocolError("garbage"))
    assert unreadable.send_state is SendState.UNCERTAIN  # type: ignore[attr-defined]
    maybe = await job_after(SunoTransient("timeout", maybe_sent=True))
    assert maybe.send_state is SendState.UNCERTAIN  # type: ignore[attr-defined]
    retry = await job_after(SunoTransient("503", code=503))
    assert retry.send_state is SendState.RETRY_WAIT  # type: ignore[attr-defined]
    assert retry.retry_at > clock.now()  # type: ignore[attr-defined]
    clock.set(retry.retry_at)  # type: ignore[attr-defined]
    resent = await service.send(retry.job_id)  # type: ignore[attr-defined]
    assert resent.stage is Stage.SUNO_TASK_CREATED
    assert resent.send_attempts == 2


async def test_transient_errors_give_up_after_max_attempts() -> None:
    """After send_max_attempts transient failures the job fails with SUNO_UNAVAILABLE."""
    suno = ScriptedSuno()
    service, _, _, clock = make(suno, send_max_attempts=3)
    job = (await service.start_job(JobRequest("ch", "u1"))).job
    for _ in range(3):
        suno.generate_errors.append(SunoTransient("503", code=503))
        state = await service.send(job.job_id)
        if state.retry_at:
            clock.set(state.retry_at)
    assert state.stage is Stage.FAILED
    assert state.error_code == "SUNO_UNAVAILABLE"


async def test_crash_in_flight_is_never_resent() -> None:
    """A job found in flight is marked uncertain, not sent again; a callback adopts its task."""
    suno = HangingSuno()
    service, store, *_ = make(suno)
    job = (await service.start_job(JobRequest("ch", "u1"))).job
    sending = asyncio.create_task(service.send(job.job_id))
    await suno.called.wait()  # the request is on its way to Suno...
    sending.cancel()  # ...when the "process" dies
    with pytest.raises(asyncio.CancelledError):
        await sending
    in_flight = await store.load(job.job_id)
    assert in_flight is not None and in_flight.send_state is SendState.IN_FLIGHT
    suno.hang = False
    state = await service.send(job.job_id)  # found later, in flight
    assert state.send_state is SendState.UNCERTAIN
    assert suno.generated == []
    token = service.signer.token(job.job_id)
    result = await service.handle_callback(
        job.job_id, token, suno.callback("cafe" * 8, ProviderStatus.TEXT_SUCCESS)
    )
    assert result is CallbackResult.RECORDED
    adopted = await store.load(job.job_id)
    assert adopted is not None
    assert adopted.task_id == "cafe" * 8
    assert adopted.stage is Stage.SUNO_PENDING


async def test_forged_and_orphan_callbacks() -> None:
    """Wrong tokens record nothing; a valid token for an unknown job is an orphan."""
    service, store, suno, _ = make()
    job = (await service.start_job(JobRequest("ch", "u1"))).job
    await service.send(job.job_id)
    ((_, _, task_id),) = suno.generated
    before = (await store.load(job.job_id)).version  # type: ignore[union-attr]
    body = suno.callback(task_id, ProviderStatus.SUCCESS)
    for job_id, token in [(job.job_id, "0" * 32), (job.job_id, None), (None, None)]:
        with pytest.raises(Unauthorized):
            await service.handle_callback(job_id, token, body)
    other = (await service.start_job(JobRequest("ch2", "u1"))).job
    with pytest.raises(Unauthorized):  # a valid token, but for another job than the task's
        await service.handle_callback(other.job_id, service.signer.token(other.job_id), body)
    assert (await store.load(job.job_id)).version == before  # type: ignore[union-attr]
    ghost = "job_1_ghostjob"
    assert (
        await service.handle_callback(
            ghost, service.signer.token(ghost), suno.callback("f" * 32, ProviderStatus.SUCCESS)
        )
        is CallbackResult.ORPHAN
    )
    assert (
        await service.handle_callback(ghost, service.signer.token(ghost), {"nonsense": True})
        is CallbackResult.UNREADABLE
    )
    orphans = await store.list_orphans()
    assert {o.reason.split(":")[0] for o in orphans} == {"no job with this task id", "unreadable"}


async def test_poll_and_sweep() -> None:
    """Polls record observations (the heartbeat); the sweeper times out exactly once."""
    suno = ScriptedSuno()
    service, _store, _, clock = make(suno, policy=JobPolicy(timeout_s=600))
    job = (await service.start_job(JobRequest("ch", "u1"))).job
    await service.send(job.job_id)
    polled = await service.poll(job.job_id)
    assert polled.stage is Stage.SUNO_PENDING
    assert polled.last_observed_at == clock.now()
    await clock.advance(30)
    assert polled.heartbeat(clock.now(), 60).is_stale is False
    await clock.advance(600)
    assert polled.heartbeat(clock.now(), 60).is_stale
    swept = await service.sweep(job.job_id)
    assert swept.stage is Stage.TIMEOUT
    assert swept.error_text() is not None
    assert "10 минут" in swept.error_text()  # type: ignore[operator]
    again = await service.sweep(job.job_id)
    assert again.version == swept.version
    suno.statuses[polled.task_id] = ProviderStatus.SUCCESS  # type: ignore[index]
    late = await service.poll(job.job_id)
    assert late.stage is Stage.TIMEOUT


async def test_callback_and_poll_race_one_success() -> None:
    """Callbacks and polls racing on one job record exactly one SunoSucceeded."""
    suno = ScriptedSuno()
    service, store, *_ = make(suno)
    job = (await service.start_job(JobRequest("ch", "u1"))).job
    await service.send(job.job_id)
    ((_, _, task_id),) = suno.generated
    suno.statuses[task_id] = ProviderStatus.SUCCESS
    token = service.signer.token(job.job_id)
    body = suno.callback(task_id, ProviderStatus.SUCCESS)
    await asyncio.gather(
        *(service.handle_callback(job.job_id, token, body) for _ in range(5)),
        *(service.poll(job.job_id) for _ in range(5)),
    )
    log = await store.read(job.job_id)
    assert sum(isinstance(r.event, SunoSucceeded) for r in log) == 1
    assert [r.version for r in log] == list(range(1, len(log) + 1))


async def test_watch() -> None:
    """watch returns the job as soon as it moves on, or as it is after the timeout."""
    service, *_ = make()
    job = (await service.start_job(JobRequest("ch", "u1"))).job
    waiter = asyncio.create_task(service.watch(job.job_id, "u1", job.version, 5))
    await asyncio.sleep(0.01)
    await service.send(job.job_id)
    moved = await asyncio.wait_for(waiter, 5)
    assert moved.version > job.version
    same = await service.watch(job.job_id, "u1", moved.version + 10, 0.01)
    assert same.version == (await service.get(job.job_id, "u1")).version
    assert (await service.list_jobs("u1", "ch"))[0].job_id == job.job_id
