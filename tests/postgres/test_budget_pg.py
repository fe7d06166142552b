"""PostgresCallBudget: the budget contract on the real PostgreSQL, and what only a shared budget
does. Two instances on one schema are two processes as far as PostgreSQL can tell; they share
one FakeClock, as processes on one machine share the time.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from _pg_harness import DSN, running_proxy

from clipjobs import FakeClock, Metrics, Priority
from clipjobs.app.ports import CallBudget, Slot
from clipjobs.domain.errors import StoreUnavailable
from clipjobs.testing import BudgetContract, BudgetFactory
from clipjobs.testing._budget_contract import peak
from clipjobs_postgres import PostgresCallBudget

pytestmark = pytest.mark.asyncio

Budgets = Callable[..., Awaitable[PostgresCallBudget]]


class TestPostgresCallBudget(BudgetContract):
    opened: list[PostgresCallBudget]

    @pytest_asyncio.fixture
    async def budget(self, clock: FakeClock, schema: str) -> AsyncIterator[BudgetFactory]:
        self.opened = []

        async def make(max_rps: float, **options: Any) -> CallBudget:
            options.setdefault("pacing", False)
            budget = await PostgresCallBudget.open(DSN, schema, max_rps, clock=clock, **options)
            self.opened.append(budget)
            return budget

        yield make
        for budget in self.opened:
            await budget.aclose()

    async def settle(self) -> None:
        await settle(*self.opened)


async def settle(*budgets: PostgresCallBudget) -> None:
    """Every budget has done what it can at the clock's time, and the callers have run."""
    for _ in range(3):
        for budget in budgets:
            await budget.settle()
        for _ in range(20):
            await asyncio.sleep(0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest_asyncio.fixture
async def budgets(schema: str, clock: FakeClock) -> AsyncIterator[Budgets]:
    """Open budgets on the test's schema and clock, closed after the test."""
    opened: list[PostgresCallBudget] = []

    async def make(max_rps: float = 2.0, **options: Any) -> PostgresCallBudget:
        options.setdefault("pacing", False)  # these tests pin the shared window
        budget = await PostgresCallBudget.open(DSN, schema, max_rps, clock=clock, **options)
        opened.append(budget)
        return budget

    try:
        yield make
    finally:
        for budget in opened:
            await budget.aclose()


async def advance(clock: FakeClock, seconds: float, *budgets: PostgresCallBudget) -> None:
    await clock.advance(seconds)
    await settle(*budgets)


async def test_two_processes_share_one_limit(budgets: Budgets, clock: FakeClock) -> None:
    """Two instances with random callers and a clock moving in random steps never start more
    than `limit` calls together in any window, and together they use the whole of it.
    """
    rng = random.Random(11)
    a, b = await budgets(5.0, window_s=1.0), await budgets(5.0, window_s=1.0)
    tasks = [
        asyncio.create_task(rng.choice((a, b)).acquire(rng.choice(list(Priority))))
        for _ in range(60)
    ]
    await settle(a, b)
    while not all(t.done() for t in tasks):
        await advance(clock, rng.uniform(0.05, 0.4), a, b)
    starts = [t.result().started_at for t in tasks]
    assert peak(starts, 1.0) == 5
    # 60 calls at 5 a second need 11 s after the first; under 14.5 s means the two together
    # used more than 80 % of the limit (one instance alone, or a limit split in two, needs
    # 23 s). The slack is for a waiter that, on a loaded machine, misses a clock step or two.
    assert max(starts) - min(starts) < timedelta(seconds=14.5)


async def test_one_process_s_rate_limit_pauses_the_other(
    budgets: Budgets, clock: FakeClock
) -> None:
    """A 430 seen by one instance pauses and slows the other, counted once in the metrics."""
    metrics = Metrics()
    a = await budgets(4.0, window_s=1.0, backoff_s=2.0, metrics=metrics)
    b = await budgets(4.0, window_s=1.0, backoff_s=2.0)
    await a.rate_limited()
    await b.rate_limited()  # the same burst, seen by the other process
    assert metrics.value("clipjobs_suno_rate_limited_total") == 1
    assert (a.slowdowns, b.slowdowns) == (1, 0)
    status = await b.status()
    assert status.limit == 2 and status.paused_until == clock.now() + timedelta(seconds=2)
    assert await b.try_acquire(Priority.CREDITS) is None
    waiter = asyncio.create_task(b.acquire(Priority.GENERATE))
    await advance(clock, 1.9, a, b)
    assert not waiter.done()
    await advance(clock, 0.1, a, b)
    assert (await waiter).started_at == clock.now()


async def test_a_generate_waiting_in_one_process_goes_before_a_poll_in_the_other(
    budgets: Budgets, clock: FakeClock
) -> None:
    """With the window full, a generate that came later in one instance starts before polls that
    waited longer in the other.
    """
    a, b = await budgets(1.0, window_s=1.0), await budgets(1.0, window_s=1.0)
    await a.acquire(Priority.POLL)  # fills the window
    polls = [asyncio.create_task(b.acquire(Priority.POLL)) for _ in range(2)]
    await advance(clock, 0.5, a, b)
    generate = asyncio.create_task(a.acquire(Priority.GENERATE))
    await settle(a, b)
    await advance(clock, 0.5, a, b)
    assert generate.done() and not any(p.done() for p in polls)
    await advance(clock, 1.0, a, b)
    assert polls[0].done() and not polls[1].done()
    await advance(clock, 1.0, a, b)
    assert polls[1].done()


async def test_a_saturated_budget_is_shared_fairly(budgets: Budgets, clock: FakeClock) -> None:
    """Two instances whose callers always want another turn each get about half of the turns:
    neither starves the other.
    """
    a, b = await budgets(4.0, window_s=1.0), await budgets(4.0, window_s=1.0)
    counts = {"a": 0, "b": 0}

    async def caller(name: str, budget: PostgresCallBudget) -> None:
        while True:
            slot = await budget.acquire(Priority.POLL)
            counts[name] += 1
            await budget.finished(slot)

    callers = [asyncio.create_task(caller(n, x)) for n, x in (("a", a), ("b", b)) for _ in range(3)]
    try:
        for _ in range(40):
            await advance(clock, 0.25, a, b)
    finally:
        for task in callers:
            task.cancel()
        await asyncio.gather(*callers, return_exceptions=True)
    total = counts["a"] + counts["b"]
    assert total >= 36, counts  # 4 per second for 10 s
    assert min(counts.values()) >= 0.4 * total, counts
    print(f"turns: {counts}")


async def test_a_dead_process_s_waiter_stops_blocking_after_live_s(
    budgets: Budgets, clock: FakeClock, admin: asyncpg.Connection, schema: str
) -> None:
    """A waiter row left by a process that died (it no longer asks) keeps its place for
    `live_s`, then the others go on without it.
    """
    a = await budgets(1.0, window_s=1.0, live_s=5.0)
    await admin.execute(
        f'INSERT INTO "{schema}".budget_waiters (budget, waiter, priority, queued_at, seen_at)'
        " VALUES ('suno', 'dead:1#0', 0, $1, $1)",
        clock.now(),
    )
    waiter = asyncio.create_task(a.acquire(Priority.POLL))
    for _ in range(9):
        await advance(clock, 0.5, a)
    assert not waiter.done()  # 4.5 s: the dead process's generate might still come
    await advance(clock, 0.6, a)
    assert waiter.done()


async def test_closing_leaves_the_shared_queue_at_once(budgets: Budgets, clock: FakeClock) -> None:
    """A process that closes its budget with calls waiting blocks no other process afterwards."""
    a, b = await budgets(1.0, window_s=1.0), await budgets(1.0, window_s=1.0)
    await a.acquire(Priority.POLL)
    gone = asyncio.create_task(a.acquire(Priority.GENERATE))
    await settle(a, b)
    later = asyncio.create_task(b.acquire(Priority.POLL))
    await settle(a, b)
    await a.aclose()
    await asyncio.gather(gone, return_exceptions=True)
    await advance(clock, 1.0, b)
    assert later.done()


async def test_cancelled_waiters_never_leak_a_turn(
    budgets: Budgets, admin: asyncpg.Connection, schema: str
) -> None:
    """Waiters of two processes cancelled at random moments (queued, being served, or granted)
    leave exactly the turns that were handed to a caller counted.
    """
    rng = random.Random(3)
    # Room for all 80 in the window (the fake clock never moves): every caller not
    # cancelled in time gets its turn, however many of the doomed were served first.
    a, b = await budgets(100.0, window_s=1.0), await budgets(100.0, window_s=1.0)
    tasks = [asyncio.create_task(rng.choice((a, b)).acquire(Priority.POLL)) for _ in range(80)]
    doomed = [t for t in tasks if rng.random() < 0.6]
    for task in doomed:
        for _ in range(rng.randrange(40)):
            await asyncio.sleep(0)
        if rng.random() < 0.3:
            await asyncio.sleep(0.002)
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await settle(a, b)
    granted = [t.result() for t in tasks if not t.cancelled()]
    rows = await admin.fetch(f'SELECT id FROM "{schema}".budget_calls')
    assert sorted(r["id"] for r in rows) == sorted(s.ident for s in granted)
    assert len(granted) >= len(tasks) - len(doomed)
    assert (await a.status()).waiting == 0


async def test_a_waiter_cancelled_as_its_turn_is_granted_gives_it_back(
    budgets: Budgets, admin: asyncpg.Connection, schema: str
) -> None:
    """A caller cancelled after its turn was granted but before it ran (a timeout firing at that
    moment) never uses the turn, so it goes back: only the turns callers got stay counted.
    """
    rng = random.Random(5)
    budget = await budgets(50.0, window_s=1.0)
    tasks = [asyncio.create_task(budget.acquire(Priority.POLL)) for _ in range(40)]
    await asyncio.sleep(0)
    # The tickets in arrival order are the tasks in creation order.
    futures = [t.future for t in sorted(budget._heap, key=lambda t: t.seq)]
    assert len(futures) == len(tasks)
    caught = 0
    while not all(t.done() for t in tasks):
        for future, task in zip(futures, tasks, strict=True):
            if future.done() and not task.done() and not task.cancelling() and rng.random() < 0.5:
                task.cancel()  # granted, and the caller has not run yet
                caught += 1
        await asyncio.sleep(0)
    await settle(budget)
    granted = [t.result() for t in tasks if not t.cancelled()]
    rows = await admin.fetch(f'SELECT id FROM "{schema}".budget_calls')
    assert sorted(r["id"] for r in rows) == sorted(s.ident for s in granted)
    assert caught > 5 and len(granted) == len(tasks) - caught


async def test_budgets_of_different_names_do_not_share(budgets: Budgets) -> None:
    """Two Suno accounts in one schema (two names) each have their own limit."""
    one = await budgets(1.0, window_s=1.0, name="account-1")
    two = await budgets(1.0, window_s=1.0, name="account-2")
    assert await one.try_acquire(Priority.POLL) is not None
    assert await two.try_acquire(Priority.POLL) is not None
    assert await one.try_acquire(Priority.POLL) is None


async def test_a_database_that_goes_away_is_store_unavailable_for_waiters_only(
    schema: str, clock: FakeClock
) -> None:
    """With the database gone, a waiting or new call fails with StoreUnavailable, while finishing
    or giving back a call already made only logs; once it is back, turns are taken again.
    """
    async with running_proxy(DSN) as proxy:
        budget = await PostgresCallBudget.open(
            proxy.dsn(DSN), schema, 1.0, clock=clock, window_s=1.0, connect_timeout_s=1.0
        )
        try:
            slot = await budget.acquire(Priority.POLL)
            waiter = asyncio.create_task(budget.acquire(Priority.POLL))
            await settle(budget)
            await proxy.drop()
            await budget.finished(slot)
            await budget.unused(slot)
            with pytest.raises(StoreUnavailable):
                await waiter
            with pytest.raises(StoreUnavailable):
                await budget.acquire(Priority.GENERATE)
            with pytest.raises(StoreUnavailable):
                await budget.status()
            await proxy.restore()
            await clock.advance(1.0)
            granted = await budget.acquire(Priority.GENERATE)
            assert isinstance(granted, Slot)
        finally:
            await budget.aclose()
