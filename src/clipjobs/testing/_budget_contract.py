"""``BudgetContract``: the one test suite every ``CallBudget`` must pass.

Subclass it and override the ``budget`` fixture: an async fixture yielding a
factory, ``await budget(max_rps, window_s=…, backoff_s=…, backoff_max_s=…,
recover_s=…, pacing=…)``, that opens a budget on the test's ``clock`` (a
:class:`~clipjobs.FakeClock`; the keywords left out take the budget's
defaults, but ``pacing``, which is False unless a test asks for it: most
tests pin the window, which pacing would hide) and closes it after the
test. A budget that does I/O overrides :meth:`BudgetContract.settle` too,
so that "nothing happened" means nothing could happen, not that the
database was slow.

Every time is the fake clock's, so no test depends on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import ClassVar

import pytest
import pytest_asyncio

from ..app.budget import BudgetedSuno, busiest
from ..app.clock import FakeClock
from ..app.ports import CallBudget, Priority, Slot
from ..domain.errors import SunoTransient
from ..domain.events import GenerationParams, Observation
from .fakes import ScriptedSuno

__all__ = ["BudgetContract", "BudgetFactory", "SlowSuno", "peak"]

#: ``await budget(max_rps, **options)``: a budget on the test's clock, closed after the test.
BudgetFactory = Callable[..., Awaitable[CallBudget]]


def peak(starts: list[datetime], window_s: float) -> int:
    """The most of ``starts`` within any window of ``window_s`` seconds."""
    us = timedelta(microseconds=1)
    return busiest([(at - starts[0]) // us for at in starts], timedelta(seconds=window_s) // us)


class SlowSuno(ScriptedSuno):
    """Each record-info reaches "Suno" 0 to ``max_delay_s`` (fake time) after it started, and
    each credit check is answered ``credits_delay_s`` after it.
    """

    def __init__(self, clock: FakeClock, max_delay_s: float, credits_delay_s: float = 0.0) -> None:
        super().__init__()
        self.clock = clock
        self.max_delay_s = max_delay_s
        self.credits_delay_s = credits_delay_s
        self.rng = random.Random(7)
        self.arrivals: list[datetime] = []

    async def record_info(self, task_id: str) -> Observation:
        await self.clock.sleep(self.rng.uniform(0.0, self.max_delay_s))
        self.arrivals.append(self.clock.now())
        return await super().record_info(task_id)

    async def credits(self) -> int:
        await self.clock.sleep(self.credits_delay_s)
        return await super().credits()


class BudgetContract:
    """Behaviour every CallBudget guarantees. Override ``budget`` (and ``settle`` for I/O)."""

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.asyncio]

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest_asyncio.fixture
    async def budget(self, clock: FakeClock) -> BudgetFactory:  # pragma: no cover - overridden
        raise NotImplementedError("subclasses provide a budget factory (an async fixture)")

    async def settle(self) -> None:
        """Let the budgets do everything they can at the clock's time (hand out turns…)."""
        for _ in range(20):
            await asyncio.sleep(0)

    async def advance(self, clock: FakeClock, seconds: float) -> None:
        await clock.advance(seconds)
        await self.settle()

    # --- the window -----------------------------------------------------------

    async def test_no_window_ever_holds_more_than_the_limit(
        self, budget: BudgetFactory, clock: FakeClock
    ) -> None:
        """Callers with random priorities and a clock moving in random steps never get more than
        `limit` starts in any window, and the budget is not over-cautious either.
        """
        rng = random.Random(7)
        b = await budget(5.0, window_s=1.0)
        assert (await b.status()).limit == 5
        tasks = [asyncio.create_task(b.acquire(rng.choice(list(Priority)))) for _ in range(60)]
        await self.settle()
        while not all(t.done() for t in tasks):
            await self.advance(clock, rng.uniform(0.05, 0.4))
        starts = [t.result().started_at for t in tasks]
        assert peak(starts, 1.0) == 5
        # 60 calls at 5 a second take about 11 windows.
        span = max(starts) - min(starts)
        assert timedelta(seconds=11) <= span < timedelta(seconds=13)

    async def test_the_default_is_twenty_calls_per_ten_seconds(self, budget: BudgetFactory) -> None:
        """max_rps=2 means 20 calls per 10-second window (Suno's documented limit)."""
        status = await (await budget(2.0)).status()
        assert (status.limit, status.window_s) == (20, 10.0)

    async def test_a_rate_under_one_call_per_window_widens_the_window(
        self, budget: BudgetFactory, clock: FakeClock
    ) -> None:
        """max_rps=0.05 allows one call per 20 seconds rather than none."""
        b = await budget(0.05)
        status = await b.status()
        assert (status.limit, status.window_s) == (1, 20.0)
        await b.acquire(Priority.POLL)
        second = asyncio.create_task(b.acquire(Priority.POLL))
        await self.settle()
        for _ in range(4):
            await self.advance(clock, 4.975)
        assert not second.done()
        await self.advance(clock, 0.1)
        assert second.done()

    # --- who goes first -------------------------------------------------------

    async def test_waiters_are_served_generate_then_poll_then_credits_fifo_within(
        self, budget: BudgetFactory, clock: FakeClock
    ) -> None:
        """With the window full, waiting calls start generate first, then polls in arrival order,
        then credit checks.
        """
        b = await budget(1.0, window_s=1.0)
        await b.acquire(Priority.POLL)  # fills the window
        order: list[str] = []

        async def call(name: str, priority: Priority) -> None:
            await b.acquire(priority)
            order.append(name)

        arrivals = [
            ("p1", Priority.POLL),
            ("c1", Priority.CREDITS),
            ("p2", Priority.POLL),
            ("g1", Priority.GENERATE),
            ("p3", Priority.POLL),
            ("g2", Priority.GENERATE),
        ]
        tasks = []
        for name, priority in arrivals:
            tasks.append(asyncio.create_task(call(name, priority)))
            await self.advance(clock, 0.01)  # each arrives a little later
        assert order == []
        for _ in arrivals:
            await self.advance(clock, 1.0)
        await asyncio.gather(*tasks)
        assert order == ["g1", "g2", "p1", "p2", "p3", "c1"]

    async def test_a_cancelled_waiter_passes_its_turn_on(
        self, budget: BudgetFactory, clock: FakeClock
    ) -> None:
        """A waiter cancelled in the queue holds no slot: the next waiter gets the turn."""
        b = await budget(1.0, window_s=1.0)
        await b.acquire(Priority.POLL)
        first = asyncio.create_task(b.acquire(Priority.GENERATE))
        second = asyncio.create_task(b.acquire(Priority.POLL))
        await self.settle()
        first.cancel()
        await self.settle()
        await self.advance(clock, 1.0)
        assert first.cancelled()
        assert second.done()
        assert (await b.status()).calls_in_window == 1

    # --- credit checks: never queue ---------------------------------------------

    async def test_try_acquire_takes_only_a_free_turn_nobody_waits_for(
        self, budget: BudgetFactory, clock: FakeClock
    ) -> None:
        """try_acquire takes a free turn, and returns None at once when the window is full or
        another call waits, without queueing.
        """
        b = await budget(1.0, window_s=1.0)
        taken = await b.try_acquire(Priority.CREDITS)
        assert taken is not None and taken.started_at == clock.now()
        assert await b.try_acquire(Priority.CREDITS) is None  # full
        waiting = asyncio.create_task(b.acquire(Priority.POLL))
        await self.advance(clock, 0.5)
        assert await b.try_acquire(Priority.CREDITS) is None
        await self.advance(clock, 0.5)
        assert waiting.done()  # the waiter went first
        assert await b.try_acquire(Priority.CREDITS) is None
        await self.advance(clock, 1.0)
        assert await b.try_acquire(Priority.GENERATE) is not None

    # --- what happened to a turn ------------------------------------------------

    async def test_a_call_keeps_its_place_until_a_window_after_its_answer(
        self, budget: BudgetFactory, clock: FakeClock
    ) -> None:
        """A window's calls answered 0.5 s late free their slots 0.5 s late, not at start +
        window.
        """
        b = await budget(2.0, window_s=10.0)
        starts = [await b.acquire(Priority.POLL) for _ in range(20)]
        await self.advance(clock, 0.5)
        for slot in starts:
            await b.finished(slot)
        waiter = asyncio.create_task(b.acquire(Priority.POLL))
        await self.settle()
        for _ in range(19):
            await self.advance(clock, 0.5)  # 10 s after the starts: Suno may still count them
        assert not waiter.done()
        await self.advance(clock, 0.5)  # 10 s after the answers
        assert waiter.done()
        assert (await waiter).started_at == starts[0].started_at + timedelta(seconds=10.5)

    async def test_finished_at_once_or_for_an_unknown_turn_changes_nothing(
        self, budget: BudgetFactory, clock: FakeClock
    ) -> None:
        """An answer at the start's instant, or for a turn not on record, leaves the window as it
        was.
        """
        b = await budget(1.0, window_s=1.0)
        started = await b.acquire(Priority.POLL)
        await b.finished(started)
        await b.finished(Slot(started.started_at, Priority.POLL, ident=987_654_321))
        waiter = asyncio.create_task(b.acquire(Priority.POLL))
        await self.advance(clock, 1.0)
        assert waiter.done()

    async def test_an_unused_turn_is_given_back_at_once(
        self, budget: BudgetFactory, clock: FakeClock
    ) -> None:
        """A turn given back unused (nothing to send after all) frees its slot at once."""
        b = await budget(1.0, window_s=1.0)
        slot = await b.acquire(Priority.GENERATE)
        waiter = asyncio.create_task(b.acquire(Priority.POLL))
        await self.settle()
        assert not waiter.done()
        await b.unused(slot)
        await self.settle()
        assert waiter.done()
        assert (await waiter).started_at == slot.started_at
        assert (await b.status()).calls_in_window == 1

    async def test_budgeted_calls_never_crowd_a_suno_window_measured_on_arrival(
        self, budget: BudgetFactory, clock: FakeClock
    ) -> None:
        """Through BudgetedSuno, calls that take time to arrive never put more than the limit in
        one of Suno's windows, measured at their arrival as Suno measures it.
        """
        b = await budget(2.0, window_s=10.0)
        inner = SlowSuno(clock, max_delay_s=0.6)
        suno = BudgetedSuno(inner, b)
        task_id = await inner.generate(GenerationParams(prompt="a song"), "https://cb.example")
        tasks = [asyncio.create_task(suno.record_info(task_id)) for _ in range(50)]
        await self.settle()
        for _ in range(250):
            await self.advance(clock, 0.1)
        await asyncio.gather(*tasks)
        assert len(inner.arrivals) == 50
        assert peak(inner.arrivals, 10.0) <= 20

    # --- 430s -----------------------------------------------------------------------

    async def test_rate_limited_pauses_halves_and_recovers(
        self, budget: BudgetFactory, clock: FakeClock
    ) -> None:
        """A 430 pauses every call for the back-off and halves the rate; answers of one burst
        count once; a recovery period restores the rate.
        """
        b = await budget(4.0, window_s=1.0, backoff_s=2.0, recover_s=5.0)
        await b.rate_limited()
        status = await b.status()
        assert (status.limit, status.headroom) == (2, 0)
        assert status.paused_until == clock.now() + timedelta(seconds=2)
        waiter = asyncio.create_task(b.acquire(Priority.GENERATE))
        await self.settle()
        for _ in range(19):
            await self.advance(clock, 0.1)
        assert not waiter.done()
        await b.rate_limited()  # the same burst: no second halving, no longer pause
        status = await b.status()
        assert status.limit == 2 and status.paused_until == clock.now() + timedelta(seconds=0.1)
        await self.advance(clock, 0.1)
        assert waiter.done()
        assert (await waiter).started_at == clock.now()
        await self.advance(clock, 3.0)  # 5 s after the 430
        assert (await b.status()).limit == 4

    async def test_repeated_rate_limits_back_off_longer(
        self, budget: BudgetFactory, clock: FakeClock
    ) -> None:
        """A second 430 after the first pause doubles the pause and halves the rate again."""
        b = await budget(8.0, window_s=1.0, backoff_s=1.0, recover_s=60.0)
        await b.rate_limited()
        await self.advance(clock, 1.0)
        await b.rate_limited()
        status = await b.status()
        assert status.limit == 2
        assert status.paused_until == clock.now() + timedelta(seconds=2)

    # --- what status() says --------------------------------------------------------

    async def test_status_counts_the_window_and_the_eta_follows_the_slots(
        self, budget: BudgetFactory, clock: FakeClock
    ) -> None:
        """status() says how many calls count now and until when, and who waits; a call N places
        back waits for the N-th slot to free, round after round; a pause delays them all.
        """
        b = await budget(2.0, window_s=1.0)
        first = await b.acquire(Priority.POLL)
        await self.advance(clock, 0.25)
        await b.acquire(Priority.POLL)
        status = await b.status()
        assert (status.limit, status.calls_in_window, status.waiting) == (2, 2, 0)
        assert status.headroom == 0 and status.paused_until is None
        assert status.counted_until == (
            first.started_at + timedelta(seconds=1),
            first.started_at + timedelta(seconds=1.25),
        )
        now = clock.now()
        assert [status.eta(now, n) for n in range(5)] == [0.75, 1.0, 1.75, 2.0, 2.75]
        waiter = asyncio.create_task(b.acquire(Priority.GENERATE))
        await self.settle()
        assert (await b.status()).waiting == 1
        await b.rate_limited()
        paused = await b.status()
        assert paused.paused_until is not None and paused.headroom == 0
        assert paused.eta(clock.now(), 0) == (paused.paused_until - clock.now()).total_seconds()
        waiter.cancel()
        await self.settle()
        assert (await b.status()).waiting == 0

    async def test_starts_are_paced_window_over_limit_apart(
        self, budget: BudgetFactory, clock: FakeClock
    ) -> None:
        """With pacing two starts are window/limit apart, so the next in line waits half a
        second, not out a window a burst filled; an unused turn leaves no gap; status() says when.
        """
        b = await budget(2.0, window_s=10.0, pacing=True)
        first = await b.acquire(Priority.GENERATE)
        second = asyncio.create_task(b.acquire(Priority.GENERATE))
        await self.settle()
        assert not second.done()
        status = await b.status()
        assert status.last_started_at == first.started_at
        assert status.eta(clock.now(), 0) == 0.5
        await self.advance(clock, 0.49)
        assert not second.done()
        await self.advance(clock, 0.01)
        slot = await asyncio.wait_for(second, 5)
        assert slot.started_at == first.started_at + timedelta(seconds=0.5)
        assert await b.try_acquire(Priority.CREDITS) is None  # 0 s after a start
        await b.unused(slot)
        assert await b.try_acquire(Priority.CREDITS) is not None

    # --- closing -------------------------------------------------------------------

    async def test_closing_fails_waiters_and_later_calls_as_transient(
        self, budget: BudgetFactory, clock: FakeClock
    ) -> None:
        """aclose wakes waiting calls with SunoTransient (not sent), refuses new ones, and is
        idempotent.
        """
        b = await budget(1.0, window_s=1.0)
        await b.acquire(Priority.POLL)
        waiter = asyncio.create_task(b.acquire(Priority.GENERATE))
        await self.settle()
        await b.aclose()
        await b.aclose()
        with pytest.raises(SunoTransient) as caught:
            await waiter
        assert not caught.value.maybe_sent
        with pytest.raises(SunoTransient):
            await b.acquire(Priority.POLL)
        assert await b.try_acquire(Priority.CREDITS) is None
