"""The Suno budget: priorities, the sliding window, 430 slow-downs, and BudgetedSuno."""

from __future__ import annotations

import asyncio
import itertools
import random
from datetime import timedelta

import pytest

from clipjobs import BudgetedSuno, FakeClock, GenerationParams, Priority, Slot, SunoBudget
from clipjobs.domain.errors import SunoRateLimited, SunoTransient
from clipjobs.testing import ScriptedSuno

pytestmark = pytest.mark.asyncio


async def settle() -> None:
    """Let every ready task run (the budget hands out turns through futures)."""
    for _ in range(20):
        await asyncio.sleep(0)


async def test_no_window_ever_holds_more_than_the_limit() -> None:
    """Many callers with random priorities and a clock moving in random steps never get more than
    `limit` starts in any window.
    """
    rng = random.Random(7)
    clock = FakeClock()
    budget = SunoBudget(5.0, clock=clock, window_s=1.0)
    assert budget.limit == 5
    tasks = [asyncio.create_task(budget.acquire(rng.choice(list(Priority)))) for _ in range(60)]
    await settle()
    while not all(t.done() for t in tasks):
        await clock.advance(rng.uniform(0.005, 0.05))
        await settle()
    assert len(budget.history) == 60
    assert budget.peak() == 5
    starts = [r.started_at for r in budget.history]
    # Paced: two starts are at least window / limit apart, never a burst.
    assert min(b - a for a, b in itertools.pairwise(starts)) >= timedelta(seconds=0.2)
    # It is not over-cautious either: 60 calls at 5 per second take 59 gaps, about 12 s.
    span = starts[-1] - starts[0]
    assert timedelta(seconds=11.8) <= span < timedelta(seconds=13)
    await budget.aclose()


async def test_default_budget_is_twenty_per_ten_seconds() -> None:
    """CLIPJOBS_SUNO_MAX_RPS=2 means 20 calls per 10-second window."""
    budget = SunoBudget(clock=FakeClock())
    assert (budget.limit, budget.window) == (20, timedelta(seconds=10))


async def test_a_rate_under_one_call_per_window_widens_the_window() -> None:
    """max_rps=0.05 allows one call per 20 seconds rather than none."""
    clock = FakeClock()
    budget = SunoBudget(0.05, clock=clock)
    assert (budget.limit, budget.window) == (1, timedelta(seconds=20))
    await budget.acquire(Priority.POLL)
    second = asyncio.create_task(budget.acquire(Priority.POLL))
    await clock.advance(19.9)
    await settle()
    assert not second.done()
    await clock.advance(0.1)
    await settle()
    assert second.done()
    await budget.aclose()


async def test_rate_limit_pauses_halves_and_recovers() -> None:
    """A 430 pauses every call for the back-off and halves the rate; recovery restores it."""
    clock = FakeClock()
    budget = SunoBudget(4.0, clock=clock, window_s=1.0, backoff_s=2.0, recover_s=5.0)
    await budget.rate_limited()
    assert budget.slowdowns == 1
    assert budget.current_limit() == 2
    assert budget.headroom() == 0
    waiter = asyncio.create_task(budget.acquire(Priority.GENERATE))
    await clock.advance(1.9)
    await settle()
    assert not waiter.done()
    # Answers of calls that were in flight together are one burst: no second halving.
    await budget.rate_limited()
    assert (budget.slowdowns, budget.current_limit()) == (1, 2)
    await clock.advance(0.1)
    await settle()
    assert waiter.done()
    assert budget.history[0].started_at == clock.now()
    await clock.advance(3.0)  # 5 s after the 430
    assert budget.current_limit() == 4
    await budget.aclose()


async def test_repeated_rate_limits_back_off_longer() -> None:
    """A second 430 after the first pause doubles the pause and halves the rate again."""
    clock = FakeClock()
    budget = SunoBudget(8.0, clock=clock, window_s=1.0, backoff_s=1.0, recover_s=60.0)
    await budget.rate_limited()
    await clock.advance(1.0)
    await budget.rate_limited()
    assert budget.current_limit() == 2
    until = budget.paused_until()
    assert until is not None
    assert until - clock.now() == timedelta(seconds=2)
    await budget.aclose()


async def test_a_cancelled_waiter_gives_its_turn_to_the_next() -> None:
    """A waiter cancelled in the queue does not hold a slot: the next waiter gets it."""
    clock = FakeClock()
    budget = SunoBudget(1.0, clock=clock, window_s=1.0)
    await budget.acquire(Priority.POLL)
    first = asyncio.create_task(budget.acquire(Priority.GENERATE))
    second = asyncio.create_task(budget.acquire(Priority.POLL))
    await settle()
    first.cancel()
    await settle()
    await clock.advance(1.0)
    await settle()
    assert first.cancelled()
    assert second.done()
    assert [r.priority for r in budget.history] == [Priority.POLL, Priority.POLL]
    await budget.aclose()


async def test_budgeted_suno_acquires_with_the_call_s_priority() -> None:
    """generate, record_info and credits each take a turn with their priority; validate and
    parse_callback take none.
    """
    clock = FakeClock()
    inner = ScriptedSuno()
    async with SunoBudget(100.0, clock=clock, window_s=1.0, pacing=False) as budget:
        suno = BudgetedSuno(inner, budget)
        suno.validate(GenerationParams(prompt="x"))
        task_id = await suno.generate(GenerationParams(prompt="x"), "https://cb.example/")
        await suno.record_info(task_id)
        assert await suno.credits() == 99
        suno.parse_callback(inner.callback(task_id, inner.statuses[task_id]))
        assert [r.priority for r in budget.history] == [
            Priority.GENERATE,
            Priority.POLL,
            Priority.CREDITS,
        ]
        assert budget.started[Priority.POLL] == 1


async def test_budgeted_suno_slows_the_budget_on_a_rate_limit_answer() -> None:
    """A SunoRateLimited answer from the inner client is re-raised and slows the whole budget."""
    clock = FakeClock()
    inner = ScriptedSuno()
    inner.generate_errors.append(SunoRateLimited("call frequency too high", code=430))
    async with SunoBudget(10.0, clock=clock, window_s=1.0) as budget:
        suno = BudgetedSuno(inner, budget)
        with pytest.raises(SunoRateLimited):
            await suno.generate(GenerationParams(prompt="x"), "https://cb.example/")
        assert budget.slowdowns == 1
        assert budget.current_limit() == 5


async def test_a_credit_check_does_not_wait_when_the_budget_is_busy() -> None:
    """With other calls waiting, a credit check gives up at once (SunoTransient), never queueing."""
    clock = FakeClock()
    inner = ScriptedSuno()
    async with SunoBudget(1.0, clock=clock, window_s=1.0) as budget:
        suno = BudgetedSuno(inner, budget)
        assert await suno.credits() == 100  # a free turn: taken
        waiting = asyncio.create_task(budget.acquire(Priority.POLL))
        await settle()
        with pytest.raises(SunoTransient):
            await suno.credits()
        await clock.advance(1.0)
        await settle()
        await waiting
        assert [r.priority for r in budget.history] == [Priority.CREDITS, Priority.POLL]


async def test_an_unused_turn_is_given_back() -> None:
    """A turn given back unused (nothing to send after all) frees its slot at once and leaves
    no trace in the history.
    """
    clock = FakeClock()
    async with SunoBudget(1.0, clock=clock, window_s=1.0) as budget:
        slot = await budget.acquire(Priority.GENERATE)
        waiter = asyncio.create_task(budget.acquire(Priority.POLL))
        await settle()
        assert not waiter.done()
        await budget.unused(slot)
        await settle()
        assert waiter.done()
        assert [r.priority for r in budget.history] == [Priority.POLL]
        assert budget.started[Priority.GENERATE] == 0


async def test_status_counts_the_window_and_the_eta_follows_the_slots() -> None:
    """status() says how many calls count now and until when; a call N places back waits for
    the N-th slot to free, round after round.
    """
    clock = FakeClock()
    async with SunoBudget(2.0, clock=clock, window_s=1.0, pacing=False) as budget:
        first = await budget.acquire(Priority.POLL)
        await clock.advance(0.25)
        await budget.acquire(Priority.POLL)
        status = await budget.status()
        assert status.limit == 2 and status.calls_in_window == 2 and status.headroom == 0
        now = clock.now()
        assert status.counted_until == (
            first.started_at + timedelta(seconds=1),
            first.started_at + timedelta(seconds=1.25),
        )
        assert [status.eta(now, n) for n in range(5)] == [0.75, 1.0, 1.75, 2.0, 2.75]
        await budget.rate_limited()
        paused = await budget.status()
        assert paused.paused_until is not None and paused.headroom == 0
        assert paused.eta(clock.now(), 0) == (paused.paused_until - clock.now()).total_seconds()


async def test_starts_are_paced_so_the_next_in_line_never_waits_a_whole_window() -> None:
    """With pacing, two starts are window/limit apart: a call arriving after a busy stretch
    waits half a second, not the rest of a window a burst filled; status() says so too.
    """
    clock = FakeClock()
    async with SunoBudget(2.0, clock=clock, window_s=10.0) as budget:
        first = await budget.acquire(Priority.GENERATE)
        second = asyncio.create_task(budget.acquire(Priority.GENERATE))
        await settle()
        assert not second.done()
        status = await budget.status()
        assert status.last_started_at == first.started_at
        assert status.eta(clock.now(), 0) == 0.5
        await clock.advance(0.49)
        await settle()
        assert not second.done()
        await clock.advance(0.01)
        await settle()
        assert (await second).started_at == first.started_at + timedelta(seconds=0.5)
        # A turn given back unused leaves no gap behind it.
        third = await asyncio.wait_for(asyncio.shield(_acquire_later(budget, clock)), 5)
        await budget.unused(third)
        assert await budget.try_acquire(Priority.CREDITS) is not None


async def _acquire_later(budget: SunoBudget, clock: FakeClock) -> Slot:
    waiter = asyncio.create_task(budget.acquire(Priority.POLL))
    await clock.advance(0.5)
    await settle()
    return await waiter


@pytest.mark.parametrize("pacing", [True, False])
async def test_a_clock_stepping_back_does_not_hold_the_next_call(pacing: bool) -> None:
    """The clock steps back a minute after a start (NTP, a fake clock): the next call with the
    window free starts at once, instead of waiting for the clock to reach the old start again.
    (Found by the service state machine, whose clock goes backwards.)
    """
    clock = FakeClock()
    budget = SunoBudget(100.0, clock=clock, window_s=10.0, pacing=pacing)
    await budget.acquire(Priority.GENERATE)
    clock.set(clock.now() - timedelta(seconds=60))
    waiting = asyncio.ensure_future(budget.acquire(Priority.GENERATE))
    await settle()
    assert waiting.done(), "the second call waits for the clock to come back"
    await waiting
