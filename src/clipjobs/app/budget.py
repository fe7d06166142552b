"""The in-process Suno budget (``SunoBudget``): every call waits its turn, generate calls first.

It implements the ``CallBudget`` port for one process (SQLite deployments);
``clipjobs_postgres`` has one that every process of a database shares.

Suno allows 20 requests per 10 seconds (``CLIPJOBS_SUNO_MAX_RPS`` = 2). The
budget is a sliding window over the start times of the calls it let through:
a call may start only when fewer than ``limit`` calls started in the last
``window_s`` seconds, so *every* window of that length holds at most
``limit`` starts, not just aligned ones. A call counts from the moment the
budget lets it go until ``window_s`` after it started; calls granted but not
yet started count too, so the record never undercounts. Suno counts a call
when it *arrives*, a little after it started here: so ``BudgetedSuno`` tells
the budget when each answer came (``finished``) and the call then counts
until ``window_s`` after that. Without it, a call that started at the very
end of a window could arrive in the same Suno window as the next burst
(430s at every window edge under load, bench/bench_load.py).

Calls are also paced: two starts are at least ``window_s / limit`` apart
(0.5 s by default). The window alone would let 20 calls go at once and then
none for 10 s, so a job that arrives just after a burst would wait the whole
window; paced, the next in line (the fair queue's choice) goes within half a
second, and Suno never sees a burst at a window's edge.

Waiters are served by :class:`Priority` (generate, then polls, then credit
checks) and first come, first served within a priority. A 405/430 answer
(``SunoRateLimited``) pauses every call for a back-off period and halves the
rate; the rate doubles back once per ``recover_s`` without another 430.
``BudgetedSuno`` puts a ``SunoClient`` behind any ``CallBudget``; its credit
checks (runOnce's pre-flight) take a turn only when one is free, never queueing.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Self, TypeVar

from attrs import frozen

from ..domain.errors import SunoRateLimited, SunoTransient
from ..domain.events import GenerationParams, Observation, TimestampedLyrics
from .logs import pipeline_log
from .metrics import Metrics
from .ports import BudgetStatus, CallBudget, Clock, Priority, Slot, SunoClient

__all__ = [
    "BudgetRecord",
    "BudgetedSuno",
    "SunoBudget",
    "busiest",
    "call_within",
    "run_in_slot",
]

_T = TypeVar("_T")
#: How many times a burst of 430s may halve the rate (down to 1/16).
_MAX_SLOWDOWN = 4


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def busiest(times: Iterable[float], window_s: float) -> int:
    """The most of ``times`` (seconds) within any window of ``window_s`` seconds: how close a
    record of calls came to a limit of so many per window."""
    ordered = sorted(times)
    best, low = 0, 0
    for high, at in enumerate(ordered):
        while at - ordered[low] >= window_s:
            low += 1
        best = max(best, high - low + 1)
    return best


@frozen
class BudgetRecord:
    """One call the budget let through: when it asked and when it started."""

    started_at: datetime
    priority: Priority
    queued_at: datetime
    ident: int = 0


@frozen(order=True)
class _Ticket:
    priority: int
    seq: int
    queued_at: datetime
    future: asyncio.Future[None]


class SunoBudget:
    """A priority-ordered, paced sliding-window rate limit for all of a process's Suno calls.

    ``max_rps * window_s`` calls may start per window (at least one; a rate
    under one call per window widens the window instead), each at least
    ``window_s / limit`` after the previous one unless ``pacing=False`` (then
    a whole window's calls may go at once). Time comes from the ``Clock``
    port, so a ``FakeClock`` drives it in tests.
    """

    def __init__(
        self,
        max_rps: float = 2.0,
        *,
        clock: Clock,
        window_s: float = 10.0,
        backoff_s: float | None = None,
        backoff_max_s: float | None = None,
        recover_s: float | None = None,
        history: int = 100_000,
        metrics: Metrics | None = None,
        pacing: bool = True,
    ) -> None:
        if not (math.isfinite(max_rps) and max_rps > 0):
            raise ValueError(f"max_rps must be a positive number, not {max_rps!r}")
        if not (math.isfinite(window_s) and window_s > 0):
            raise ValueError(f"window_s must be a positive number, not {window_s!r}")
        per_window = math.floor(max_rps * window_s + 1e-9)
        if per_window < 1:
            per_window, window_s = 1, 1.0 / max_rps
        self.max_rps = max_rps
        self.limit = per_window
        self.window = timedelta(seconds=window_s)
        self.backoff = timedelta(seconds=window_s if backoff_s is None else backoff_s)
        self.backoff_max = timedelta(
            seconds=6 * window_s if backoff_max_s is None else backoff_max_s
        )
        self.recover = timedelta(seconds=3 * window_s if recover_s is None else recover_s)
        self._clock = clock
        self._metrics = metrics
        self._pacing = pacing
        #: The marks that count: each call's start, moved to its answer when it comes.
        self._marks: deque[tuple[datetime, int]] = deque(maxlen=per_window)
        self._history: dict[int, BudgetRecord] = {}
        self._history_max = max(history, per_window)
        self._idents = itertools.count(1)
        self._heap: list[_Ticket] = []
        self._seq = itertools.count()
        self._pending = 0
        #: When the latest turn was handed out (pacing counts from it).
        self._last_start: datetime | None = None
        self._level = 0
        self._limited_at: datetime | None = None
        self._paused_until: datetime | None = None
        self._timer: asyncio.Task[None] | None = None
        self._timer_at: datetime | None = None
        self._closed = False
        #: Calls let through, by priority; and 430/405 answers that slowed the budget.
        self.started: dict[Priority, int] = dict.fromkeys(Priority, 0)
        self.slowdowns = 0

    # --- what tests and operators read --------------------------------------

    @property
    def history(self) -> list[BudgetRecord]:
        """The most recent calls let through (up to ``history``), oldest first."""
        return list(self._history.values())

    def peak(self, window_s: float | None = None) -> int:
        """The most calls that started within any window of ``window_s`` in the history."""
        width = self.window if window_s is None else timedelta(seconds=window_s)
        # In whole microseconds: float seconds since 1970 would round 10 s to 9.999999.
        us = timedelta(microseconds=1)
        starts = ((r.started_at - _EPOCH) // us for r in self._history.values())
        return busiest(starts, width // us)

    @property
    def waiting(self) -> int:
        """Calls waiting for their turn."""
        return sum(1 for t in self._heap if not t.future.done())

    def current_limit(self, now: datetime | None = None) -> int:
        """Calls allowed per window now: ``limit``, halved per recent 430."""
        return max(1, self.limit >> self._slowdown(now or self._clock.now()))

    def paused_until(self) -> datetime | None:
        """When a 430 pause ends, if one is in force."""
        now = self._clock.now()
        until = self._paused_until
        return until if until is not None and until > now else None

    def headroom(self) -> int:
        """Calls that could start right now without waiting (0 while paused)."""
        now = self._clock.now()
        if self.paused_until() is not None:
            return 0
        recent = sum(1 for at, _ in self._marks if at > now - self.window)
        return max(0, self.current_limit(now) - recent - self._pending - self.waiting)

    def gap(self, now: datetime | None = None) -> timedelta:
        """The least time between two starts at the current rate (``window / limit``; 0
        without pacing)."""
        if not self._pacing:
            return timedelta(0)
        return self.window / self.current_limit(now)

    async def status(self) -> BudgetStatus:
        now = self._clock.now()
        counted = sorted(at + self.window for at, _ in self._marks if at > now - self.window)
        return BudgetStatus(
            limit=self.current_limit(now),
            window_s=self.window.total_seconds(),
            counted_until=tuple(counted),
            waiting=self.waiting,
            paused_until=self.paused_until(),
            last_started_at=self._last_start if self._pacing else None,
        )

    # --- taking a turn ------------------------------------------------------

    async def acquire(self, priority: Priority) -> Slot:
        """Wait until a call of this priority may start; the caller starts it at once."""
        if self._closed:
            raise SunoTransient("the Suno budget is closed")
        loop = asyncio.get_running_loop()
        ticket = _Ticket(int(priority), next(self._seq), self._clock.now(), loop.create_future())
        heapq.heappush(self._heap, ticket)
        self._dispatch()
        try:
            await ticket.future
        except asyncio.CancelledError:
            fut = ticket.future
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                # Granted just before the cancel: the turn was handed out, so it counts.
                self._record(priority, ticket.queued_at)
            else:
                fut.cancel()
                self._dispatch()
            raise
        return self._record(priority, ticket.queued_at)

    async def try_acquire(self, priority: Priority) -> Slot | None:
        if self._closed or self.waiting:
            return None
        now = self._clock.now()
        if self._next_slot(now) != now:
            return None
        self._pending += 1
        self._last_start = now
        return self._record(priority, now)

    async def finished(self, slot: Slot) -> None:
        """The call has its answer: it counts until ``window_s`` from now.

        Suno saw it somewhere between its start and now, so it keeps its place
        in the window until a window after now. A start that has already left
        the record (``limit`` newer calls started since) is left alone.
        """
        now = self._clock.now()
        for index, (at, ident) in enumerate(self._marks):
            if ident == slot.ident:
                if now > at:
                    del self._marks[index]
                    # Every mark is a start or an answer before now: appending keeps the order.
                    self._marks.append((now, ident))
                return

    async def unused(self, slot: Slot) -> None:
        """Forget a turn that was not used: it never reached Suno."""
        for index, (_, ident) in enumerate(self._marks):
            if ident == slot.ident:
                del self._marks[index]
                break
        if self._history.pop(slot.ident, None) is not None:
            self.started[slot.priority] -= 1
        if self._last_start == slot.started_at:
            self._last_start = None  # nothing left: the next call need not keep its distance
        self._dispatch()

    async def rate_limited(self) -> None:
        """Suno said 430/405: pause everything and halve the rate.

        Answers to calls that were in flight together are one burst: a 430
        during the pause it caused changes nothing more.
        """
        now = self._clock.now()
        if self._paused_until is not None and now < self._paused_until:
            return
        level = self._slowdown(now)
        seconds = min(self.backoff_max.total_seconds(), self.backoff.total_seconds() * 2**level)
        self._level = min(level + 1, _MAX_SLOWDOWN)
        self._limited_at = now
        self._paused_until = now + timedelta(seconds=seconds)
        self.slowdowns += 1
        if self._metrics is not None:
            self._metrics.inc("clipjobs_suno_rate_limited_total")
        pipeline_log.warning(
            "Suno rate limit hit: pausing Suno calls for %.1f s, then at most %d per %g s",
            seconds,
            self.current_limit(now),
            self.window.total_seconds(),
        )
        self._dispatch()

    async def aclose(self) -> None:
        """Stop the timer and fail every waiter with SunoTransient; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for ticket in self._heap:
            if not ticket.future.done():
                ticket.future.set_exception(SunoTransient("the Suno budget is closed"))
        self._heap.clear()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- inside ---------------------------------------------------------------

    def _slowdown(self, now: datetime) -> int:
        if self._level == 0 or self._limited_at is None:
            return 0
        recovered = int((now - self._limited_at) / self.recover)
        return max(0, self._level - recovered)

    def _record(self, priority: Priority, queued_at: datetime) -> Slot:
        now = self._clock.now()
        ident = next(self._idents)
        self._pending -= 1
        self._marks.append((now, ident))
        self._history[ident] = BudgetRecord(now, priority, queued_at, ident)
        while len(self._history) > self._history_max:
            del self._history[next(iter(self._history))]
        self.started[priority] += 1
        self._dispatch()
        return Slot(now, priority, ident)

    def _next_slot(self, now: datetime) -> datetime | None:
        """When the next call may start; None until a granted call has started."""
        if self._paused_until is not None and now < self._paused_until:
            return self._paused_until
        free = self.current_limit(now) - self._pending
        if free <= 0:
            return None
        last = self._last_start
        # Nothing started yet, or the clock stepped back past the latest start
        # (NTP, a fake clock): pace from now rather than wait for the old time.
        fresh = last is None or last > now
        paced = now if fresh or last is None else max(now, last + self.gap(now))
        recent = [at for at, _ in self._marks if at > now - self.window]
        if len(recent) < free:
            return paced
        return max(paced, recent[-free] + self.window)

    def _dispatch(self) -> None:
        if self._closed:
            return
        while self._heap:
            head = self._heap[0]
            if head.future.done():
                heapq.heappop(self._heap)
                continue
            now = self._clock.now()
            when = self._next_slot(now)
            if when is None:
                return  # a granted call's start will dispatch again
            if when > now:
                self._arm(when, now)
                return
            heapq.heappop(self._heap)
            self._pending += 1
            self._last_start = now
            head.future.set_result(None)

    def _arm(self, when: datetime, now: datetime) -> None:
        if self._timer is not None and self._timer_at is not None and self._timer_at <= when:
            return  # an earlier wake-up is set; it will re-arm
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = asyncio.get_running_loop().create_task(
            self._wake((when - now).total_seconds())
        )

    async def _wake(self, seconds: float) -> None:
        await self._clock.sleep(seconds)
        self._timer = None
        self._timer_at = None
        self._dispatch()


async def call_within(
    budget: CallBudget, priority: Priority, call: Callable[[], Awaitable[_T]]
) -> _T:
    """Run one Suno call in a turn of ``budget``; a 430/405 answer slows the budget."""
    slot = await budget.acquire(priority)
    return await run_in_slot(budget, slot, call)


async def run_in_slot(budget: CallBudget, slot: Slot, call: Callable[[], Awaitable[_T]]) -> _T:
    """Make the Suno call ``slot`` was granted for, and tell the budget how it went."""
    try:
        return await call()
    except SunoRateLimited:
        await asyncio.shield(budget.rate_limited())
        raise
    finally:
        await asyncio.shield(budget.finished(slot))


class BudgetedSuno:
    """A ``SunoClient`` whose network calls each wait their turn in a ``CallBudget``.

    ``validate`` and ``parse_callback`` are local and never wait. A credit
    check takes a turn only if one is free right now and otherwise raises
    ``SunoTransient``: it is runOnce's pre-flight, which then proceeds
    without it, and a saturated budget must not make every runOnce wait.
    """

    def __init__(self, inner: SunoClient, budget: CallBudget) -> None:
        self.inner = inner
        self.budget = budget

    def validate(self, params: GenerationParams) -> None:
        self.inner.validate(params)

    async def generate(self, params: GenerationParams, callback_url: str) -> str:
        return await call_within(
            self.budget, Priority.GENERATE, lambda: self.inner.generate(params, callback_url)
        )

    async def record_info(self, task_id: str) -> Observation:
        return await call_within(
            self.budget, Priority.POLL, lambda: self.inner.record_info(task_id)
        )

    async def credits(self) -> int:
        slot = await self.budget.try_acquire(Priority.CREDITS)
        if slot is None:
            raise SunoTransient("no Suno budget to spare for a credit check now")
        return await run_in_slot(self.budget, slot, self.inner.credits)

    async def timestamped_lyrics(self, task_id: str, audio_id: str) -> TimestampedLyrics:
        return await call_within(
            self.budget, Priority.POLL, lambda: self.inner.timestamped_lyrics(task_id, audio_id)
        )

    def parse_callback(self, payload: Mapping[str, Any]) -> Observation:
        return self.inner.parse_callback(payload)
