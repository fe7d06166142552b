"""500 due jobs on one budget: never over the limit, generate first, fair by user, none starves.

Everything runs on a ``FakeClock`` moved in 10 ms ticks, so the assertions are about order and
counts, never about how long a loaded machine took.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from _workers_harness import ProgressingSuno, worker_config

from clipjobs import (
    ChannelDefaults,
    FakeClock,
    InMemoryEventStore,
    JobPolicy,
    JobRequest,
    JobService,
    LoopLimits,
    Priority,
    ProviderStatus,
    ServiceConfig,
    Stage,
    SunoBudget,
    WebhookSigner,
    Workers,
)

pytestmark = pytest.mark.asyncio

USERS = 5
PER_USER = 100


async def tick(clock: FakeClock, seconds: float = 0.01) -> None:
    await clock.advance(seconds)
    for _ in range(30):
        await asyncio.sleep(0)


def service(
    store: InMemoryEventStore, suno: ProgressingSuno, clock: FakeClock, budget: SunoBudget
) -> JobService:
    return JobService(
        store,
        suno,
        ChannelDefaults(),
        WebhookSigner("secret-for-worker-tests"),
        clock=clock,
        config=ServiceConfig(
            callback_base_url="https://clips.example",
            policy=JobPolicy(timeout_s=3600, poll_after_s=0.05, poll_interval_s=0.3),
            max_active_per_user=0,
        ),
        budget=budget,
    )


async def test_500_due_jobs_share_the_budget_fairly() -> None:
    """With 500 jobs of 5 users due for polls, no window holds more than the budget's limit, a
    new job's generate call goes before every poll that asks after it, polls go round-robin by
    user, and every job is polled once before any is polled twice.
    """
    clock = FakeClock()
    store = InMemoryEventStore()
    suno = ProgressingSuno(path=(ProviderStatus.PENDING,), credits=10_000)
    setup_budget = SunoBudget(1e6, clock=clock, window_s=1.0, pacing=False)
    setup = service(store, suno, clock, setup_budget)
    task_user: dict[str, str] = {}
    for i in range(PER_USER):
        for u in range(USERS):
            job = (await setup.start_job(JobRequest(f"channel_{u}_{i}", f"user{u}"))).job
            sent = await setup.send(job.job_id)
            assert sent.stage is Stage.SUNO_TASK_CREATED and sent.task_id is not None
            task_user[sent.task_id] = f"user{u}"
    await tick(clock, 0.1)  # every job is past its first poll time

    budget = SunoBudget(100.0, clock=clock, window_s=0.2)
    limit = budget.limit
    assert limit == 20
    loaded = service(store, suno, clock, budget)
    config = worker_config("loaded", poll=LoopLimits(batch=25, concurrency=25), idle_s=0.05)
    new_tasks: list[str] = []
    async with Workers(loaded, config):
        while len(suno.polled) < 60:
            await tick(clock)
        for i in range(10):
            await loaded.start_job(JobRequest(f"new_channel_{i}", "newcomer"))
            await tick(clock)
        for _ in range(2000):
            if set(task_user) <= set(suno.polled) and len(suno.generated) == USERS * PER_USER + 10:
                break
            await tick(clock)
        new_tasks = [task for _, _, task in suno.generated[USERS * PER_USER :]]

    history = budget.history
    # 1. The budget: never more than `limit` call starts in any window of its length, and it
    #    was used to the full.
    assert budget.peak() == limit

    # 2. Generate first: no poll that asked after a generate call started before it.
    generates = [r for r in history if r.priority is Priority.GENERATE]
    assert len(generates) == 10 and len(new_tasks) == 10
    polls = [r for r in history if r.priority is Priority.POLL]
    for g in generates:
        assert not [p for p in polls if g.queued_at < p.queued_at and p.started_at < g.started_at]
        assert g.started_at - g.queued_at <= budget.window

    # 3. Fair by user: in every run of 5 first polls the 5 users appear once each (the claim
    #    takes round-robin by user), and no job is polled twice before every job was polled once.
    first_polls = list(dict.fromkeys(t for t in suno.polled if t in task_user))
    assert len(first_polls) == USERS * PER_USER
    for start in range(0, len(first_polls), USERS):
        users = Counter(task_user[t] for t in first_polls[start : start + USERS])
        assert set(users.values()) == {1}, (start, users)
    old = [t for t in suno.polled if t in task_user]
    assert old[: USERS * PER_USER] == first_polls
    await setup_budget.aclose()
    await budget.aclose()
