"""The budget counts a call until a window after its answer, as Suno counts it when it arrives."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from clipjobs import BudgetedSuno, FakeClock, Priority, Slot, SunoBudget
from clipjobs.domain.events import GenerationParams
from clipjobs.testing._budget_contract import SlowSuno, peak

pytestmark = pytest.mark.asyncio


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_a_call_keeps_its_place_until_a_window_after_its_answer() -> None:
    """A window's calls answered 0.5 s late free their slots 0.5 s late, not at start + window."""
    clock = FakeClock()
    budget = SunoBudget(2.0, clock=clock, window_s=10.0, pacing=False)
    starts = [await budget.acquire(Priority.POLL) for _ in range(budget.limit)]
    await clock.advance(0.5)
    for slot in starts:
        await budget.finished(slot)
    waiter = asyncio.create_task(budget.acquire(Priority.POLL))
    await clock.advance(9.5)  # 10 s after the starts: Suno may still count them
    await settle()
    assert not waiter.done()
    await clock.advance(0.5)  # 10 s after the answers
    await settle()
    assert waiter.done()
    assert (await waiter).started_at == starts[0].started_at + timedelta(seconds=10.5)
    await budget.aclose()


async def test_finished_with_no_delay_or_an_unknown_start_changes_nothing() -> None:
    """An answer at the start's instant, or for a turn not on record, leaves the window as it was
    (direct ``acquire`` callers that never call ``finished`` keep the old accounting).
    """
    clock = FakeClock()
    budget = SunoBudget(1.0, clock=clock, window_s=1.0)
    started = await budget.acquire(Priority.POLL)
    await budget.finished(started)
    await budget.finished(Slot(started.started_at, Priority.POLL, ident=10_000))
    waiter = asyncio.create_task(budget.acquire(Priority.POLL))
    await clock.advance(1.0)
    await settle()
    assert waiter.done()
    await budget.aclose()


async def test_budgeted_calls_never_put_more_than_the_limit_in_a_suno_window() -> None:
    """Through BudgetedSuno, calls that take time to arrive never crowd one of Suno's windows,
    measured at their arrival as Suno measures it.
    """
    clock = FakeClock()
    budget = SunoBudget(2.0, clock=clock, window_s=10.0)
    inner = SlowSuno(clock, max_delay_s=0.6)
    suno = BudgetedSuno(inner, budget)
    task_id = await inner.generate(GenerationParams(prompt="a song"), "https://cb.example")
    tasks = [asyncio.create_task(suno.record_info(task_id)) for _ in range(70)]
    for _ in range(400):
        await clock.advance(0.1)
        await settle()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert len(inner.arrivals) >= 40
    assert peak(inner.arrivals, 10.0) <= budget.limit
    await budget.aclose()


async def test_a_credit_check_also_counts_until_a_window_after_its_answer() -> None:
    """runOnce's credit pre-flight, which only takes a free turn, keeps its place the same way."""
    clock = FakeClock()
    budget = SunoBudget(0.1, clock=clock, window_s=10.0)  # one call per 10 s
    inner = SlowSuno(clock, max_delay_s=0.0, credits_delay_s=2.0)
    suno = BudgetedSuno(inner, budget)
    check = asyncio.create_task(suno.credits())
    await settle()
    await clock.advance(2.0)
    assert await check == 100
    waiter = asyncio.create_task(budget.acquire(Priority.POLL))
    await clock.advance(9.9)  # 10 s after the check started, but not after its answer
    await settle()
    assert not waiter.done()
    await clock.advance(2.1)
    await settle()
    assert waiter.done()
    await budget.aclose()
