"""500 due jobs on one budget: never over the limit, generate first, oldest first, none starves."""

from __future__ import annotations

import asyncio

import pytest
from _workers_harness import ProgressingSuno, Rig, wait_for_stage, wait_until

from clipjobs import (
    InMemoryEventStore,
    JobPolicy,
    LoopLimits,
    Priority,
    ProviderStatus,
    Stage,
)

pytestmark = pytest.mark.asyncio

JOBS = 500


async def test_500_due_jobs_share_the_budget_fairly() -> None:
    """With 500 jobs due, no window holds more than the budget's limit, new jobs' generate calls
    jump the queue of polls, the oldest-due jobs are polled first, and every job is polled before
    any is polled twice.
    """
    store = InMemoryEventStore()
    suno = ProgressingSuno(path=(ProviderStatus.PENDING,), credits=10_000)
    policy = JobPolicy(timeout_s=600, poll_after_s=0.05, poll_interval_s=0.3)
    setup = Rig(store, suno, policy=policy, max_rps=1e6)
    states = []
    for i in range(JOBS):
        job = await setup.start(f"channel_{i}")
        states.append(await setup.service.send(job.job_id))
    assert all(s.stage is Stage.SUNO_TASK_CREATED for s in states)
    await asyncio.sleep(0.1)  # every job is now past its first poll time
    due_order = [s.task_id for s in sorted(states, key=lambda s: (s.due_at, s.job_id))]
    old_tasks = set(due_order)

    rig = Rig(store, suno, policy=policy, max_rps=100.0, window_s=0.2)
    limit = rig.budget.limit
    assert limit == 20
    polls = LoopLimits(batch=25, concurrency=25)
    new_jobs = []
    async with rig.workers("loaded", poll=polls):
        await wait_until(lambda: len(suno.polled) >= 60, what="a backlog of polls")
        for i in range(10):
            new_jobs.append(await rig.start(f"new_channel_{i}"))
            await asyncio.sleep(0.02)
        for job in new_jobs:
            await wait_for_stage(store, job.job_id, Stage.SUNO_TASK_CREATED, Stage.SUNO_PENDING)
        await wait_until(
            lambda: old_tasks <= set(suno.polled), timeout=25, what="every job polled once"
        )

    history = rig.budget.history
    # 1. The budget: never more than `limit` call starts in any window of its length.
    assert rig.budget.peak() <= limit
    assert rig.budget.peak() == limit  # and it was used to the full

    # 2. Generate first: each new job's call overtook the polls waiting when it asked.
    generates = [r for r in history if r.priority is Priority.GENERATE]
    assert len(generates) == 10
    for g in generates:
        waiting = [
            p
            for p in history
            if p.priority is Priority.POLL and p.queued_at < g.queued_at < p.started_at
        ]
        ahead = [p for p in waiting if p.started_at < g.started_at]
        assert len(waiting) - len(ahead) >= 1, "no poll was waiting: the test proves nothing"
        # Only polls already handed a turn when the generate call asked may start before it.
        assert len(ahead) <= 5

    # 3. Oldest first, none starves: first polls follow the due order (give or take one claim
    # batch), and no job is polled twice before every job was polled once.
    first_seen: list[str] = []
    seen: set[str] = set()
    second_poll_at = None
    for index, task_id in enumerate(suno.polled):
        if task_id not in old_tasks:
            continue
        if task_id in seen:
            second_poll_at = index if second_poll_at is None else second_poll_at
            continue
        seen.add(task_id)
        first_seen.append(task_id)
        last_first_poll_at = index
    assert len(first_seen) == JOBS
    rank = {task_id: i for i, task_id in enumerate(due_order)}
    worst = max(abs(rank[task_id] - i) for i, task_id in enumerate(first_seen))
    assert worst <= polls.batch
    assert second_poll_at is None or second_poll_at > last_first_poll_at
    await setup.aclose()
    await rig.aclose()
