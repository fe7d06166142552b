"""``PostgresCallBudget``: one Suno budget shared by every process of a PostgreSQL schema.

The ``CallBudget`` port, with the semantics of the in-process ``SunoBudget``
(a sliding window in which a call counts from its start until a window after
its answer; generate, then polls, then credit checks, first come first served
within one; a 430 pauses everyone and halves the rate), kept in three tables
of the schema (migration 3) so that N processes make one Suno account's
limit, not N times it:

- ``budget``: one row per budget (``name``, one Suno account): the pause, and
  the slow-down level and when it was set;
- ``budget_calls``: every call let through, with its priority, owner, queue
  and start times, and ``counts_until`` (start + window, then answer + window);
- ``budget_waiters``: per budget instance (a process), its first waiting call:
  priority, arrival, and when it last asked.

Taking a turn is one round trip: ``budget_take()`` locks the budget row (so
takers of every process are serialised, for microseconds), re-announces the
caller's first waiter, and grants only to the best live waiter of all the
processes, when the pause is over and fewer than ``limit`` calls count now.
In the process, one dispatcher task asks for the local head and sleeps on the
injected clock until the time the database said, so a ``FakeClock`` drives it
like ``SunoBudget``. Waiters of a process that stopped asking for ``live_s``
(it died) are ignored. Times are the processes' clocks, passed into SQL: the
processes sharing a budget must agree on the time to well within a window.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import math
import os
import secrets
import socket
from collections.abc import Coroutine
from datetime import datetime, timedelta
from typing import Any, Self

import asyncpg
from attrs import frozen

from clipjobs.app.logs import pipeline_log
from clipjobs.app.metrics import Metrics
from clipjobs.app.ports import BudgetStatus, Clock, Priority, Slot
from clipjobs.domain.errors import ClipjobsError, StoreUnavailable, SunoTransient

from ._errors import edge
from ._schema import check_schema_name, migrate, render

__all__ = ["PostgresCallBudget"]

#: How many times a burst of 430s may halve the rate (down to 1/16), as in SunoBudget.
_MAX_SLOWDOWN = 4

_SQL = {
    "take": "SELECT call_id, retry_at, behind FROM {s}.budget_take("
    "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    "forget": "DELETE FROM {s}.budget_waiters WHERE budget = $1 AND waiter = $2",
    "finished": "UPDATE {s}.budget_calls SET answered_at = $2,"
    " counts_until = greatest(counts_until, $2::timestamptz + $3::interval) WHERE id = $1",
    # A turn given back leaves no pacing gap behind it if it was the latest.
    "unused": """
        WITH gone AS (DELETE FROM {s}.budget_calls WHERE id = $1 RETURNING budget, started_at)
        UPDATE {s}.budget AS b SET last_started_at = NULL FROM gone
        WHERE b.name = gone.budget AND b.last_started_at = gone.started_at
    """,
    "limited": "SELECT paused_until, level FROM {s}.budget_limited($1, $2, $3, $4, $5, $6)",
    "status": """
        SELECT b.paused_until, b.level, b.limited_at, b.last_started_at,
            ARRAY(SELECT c.counts_until FROM {s}.budget_calls AS c
                  WHERE c.budget = $1 AND c.counts_until > $2
                  ORDER BY c.counts_until) AS counted,
            (SELECT count(*) FROM {s}.budget_waiters AS w
             WHERE w.budget = $1 AND w.waiter <> $3
               AND w.seen_at > $2::timestamptz - $4::interval) AS others
        FROM (VALUES (1)) AS one (x) LEFT JOIN {s}.budget AS b ON b.name = $1
    """,
}


class _NoReset(asyncpg.Connection):
    """A connection the pool hands back as it is: the budget's statements leave no session state.

    asyncpg's default runs ``RESET ALL; UNLISTEN *; …`` on every release, a
    second round trip per turn.
    """

    def get_reset_query(self) -> str:
        return ""


@frozen(order=True)
class _Ticket:
    priority: int
    seq: int
    queued_at: datetime
    future: asyncio.Future[Slot]


class PostgresCallBudget:
    """A ``CallBudget`` every process on one PostgreSQL schema shares (one Suno account each).

    ``await PostgresCallBudget.open(dsn, schema, max_rps, clock=…)`` or
    ``async with PostgresCallBudget(dsn, schema, max_rps, clock=…)``. Starts
    are paced across processes (two at least ``window_s / limit`` apart) like
    ``SunoBudget``'s, unless ``pacing=False``. Every
    process must use the same ``max_rps``, ``window_s`` and ``name``;
    ``name`` lets one schema hold the budgets of several accounts. The
    budget opens its own small pool (up to ``pool_size`` connections) and
    migrates the schema like the store does. Its transactions commit
    asynchronously (``synchronous_commit=off``): a turn waits for no WAL
    flush, and a database crash can lose only the last moments of the
    record (a few calls that then count too briefly, once).

    ``acquire``, ``try_acquire`` and ``status`` raise ``StoreUnavailable``
    when the database is away; ``finished``, ``unused`` and ``rate_limited``
    only log it (the call was made; the record stays on the safe side: a
    call then counts until a window after its start, or, unused, until then).
    """

    def __init__(
        self,
        dsn: str,
        schema: str = "clipjobs",
        max_rps: float = 2.0,
        *,
        clock: Clock,
        name: str = "suno",
        window_s: float = 10.0,
        backoff_s: float | None = None,
        backoff_max_s: float | None = None,
        recover_s: float | None = None,
        metrics: Metrics | None = None,
        owner: str | None = None,
        live_s: float = 5.0,
        refresh_s: float = 1.0,
        retry_s: float = 0.05,
        pool_size: int = 3,
        connect_timeout_s: float = 5.0,
        command_timeout_s: float = 10.0,
        pacing: bool = True,
    ) -> None:
        if not (math.isfinite(max_rps) and max_rps > 0):
            raise ValueError(f"max_rps must be a positive number, not {max_rps!r}")
        if not (math.isfinite(window_s) and window_s > 0):
            raise ValueError(f"window_s must be a positive number, not {window_s!r}")
        if not 0 < refresh_s < live_s:
            raise ValueError("refresh_s must be positive and shorter than live_s")
        per_window = math.floor(max_rps * window_s + 1e-9)
        if per_window < 1:
            per_window, window_s = 1, 1.0 / max_rps
        self.max_rps = max_rps
        self.limit = per_window
        self.name = name
        self.window = timedelta(seconds=window_s)
        self.backoff = timedelta(seconds=window_s if backoff_s is None else backoff_s)
        self.backoff_max = timedelta(
            seconds=6 * window_s if backoff_max_s is None else backoff_max_s
        )
        self.recover = timedelta(seconds=3 * window_s if recover_s is None else recover_s)
        #: Whose calls these are (``budget_calls.owner``): by default host:pid, like a worker.
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        #: This instance's row in ``budget_waiters``: unique even for two budgets in one process.
        self.waiter_id = f"{self.owner}#{secrets.token_hex(4)}"
        self._live = timedelta(seconds=live_s)
        self._refresh = timedelta(seconds=refresh_s)
        self._retry = timedelta(seconds=retry_s)
        self._dsn = dsn
        self._schema = check_schema_name(schema)
        self._pool_size = pool_size
        self._connect_timeout_s = connect_timeout_s
        self._command_timeout_s = command_timeout_s
        self._sql = {key: render(sql, schema) for key, sql in _SQL.items()}
        self._clock = clock
        self._metrics = metrics
        self._pacing = pacing
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        self._heap: list[_Ticket] = []
        self._seq = itertools.count()
        self._dispatcher: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        #: While the dispatcher waits: until when on the clock (None: for a wake-up).
        self._parked = False
        self._parked_until: datetime | None = None
        self._registered = False
        self._background: set[asyncio.Task[None]] = set()
        self._closed = False
        #: 430/405 answers of this process that slowed the shared budget.
        self.slowdowns = 0

    @classmethod
    async def open(
        cls, dsn: str, schema: str = "clipjobs", max_rps: float = 2.0, **options: Any
    ) -> Self:
        """Connect and migrate the schema forward (as the store does); ready to take turns."""
        budget = cls(dsn, schema, max_rps, **options)
        await budget._open()
        return budget

    async def _open(self) -> None:
        if self._pool is not None:
            return
        if self._closed:
            raise StoreUnavailable("the PostgreSQL budget is closed")
        try:
            with edge():
                self._pool = await asyncpg.create_pool(
                    self._dsn,
                    min_size=1,
                    max_size=self._pool_size,
                    timeout=self._connect_timeout_s,
                    command_timeout=self._command_timeout_s,
                    connection_class=_NoReset,
                    server_settings={
                        "application_name": f"clipjobs-budget:{self._schema}",
                        "synchronous_commit": "off",
                    },
                )
                async with self._pool.acquire() as conn:
                    await migrate(conn, self._schema)
        except BaseException:
            await self.aclose()
            raise

    async def __aenter__(self) -> Self:
        await self._open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def schema(self) -> str:
        return self._schema

    # --- the port ---------------------------------------------------------------

    async def acquire(self, priority: Priority) -> Slot:
        """Wait until a call of this priority may start, in every process's order."""
        if self._closed:
            raise SunoTransient("the Suno budget is closed")
        loop = asyncio.get_running_loop()
        ticket = _Ticket(int(priority), next(self._seq), self._clock.now(), loop.create_future())
        heapq.heappush(self._heap, ticket)
        if self._head() is ticket:
            self._wake.set()
        if self._dispatcher is None:
            self._dispatcher = loop.create_task(self._dispatch(), name="clipjobs-pg-budget")
        try:
            return await ticket.future
        except asyncio.CancelledError:
            fut = ticket.future
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                # Granted as it was cancelled: the turn goes back, it will not be used.
                self._in_background(self.unused(fut.result()))
            else:
                fut.cancel()
                self._wake.set()  # the head may have changed: announce the new one
            raise

    async def try_acquire(self, priority: Priority) -> Slot | None:
        """A turn only if one is free now and no call waits in any process; never queues."""
        if self._closed or self._head() is not None:
            return None
        now = self._clock.now()
        row = await self._take(int(priority), now, now, register=False)
        if row["call_id"] is None:
            return None
        return Slot(now, priority, row["call_id"])

    async def finished(self, slot: Slot) -> None:
        """The call has its answer: it counts until a window from now, in every process."""
        await self._best_effort("finished", slot.ident, self._clock.now(), self.window)

    async def unused(self, slot: Slot) -> None:
        """Forget a turn that never reached Suno: its slot is free at once."""
        await self._best_effort("unused", slot.ident)
        self._wake.set()

    async def rate_limited(self) -> None:
        """Suno said 430/405: pause every process and halve the rate (once per burst)."""
        now = self._clock.now()
        try:
            row = await self._fetchrow(
                "limited",
                self.name,
                now,
                self.backoff,
                self.backoff_max,
                self.recover,
                _MAX_SLOWDOWN,
            )
        except ClipjobsError as exc:
            pipeline_log.warning(
                "Suno rate limit hit, but the shared budget is unreachable: %s", exc
            )
            return
        if row is None or row["paused_until"] is None:
            return  # another answer of the same burst paused it already
        self.slowdowns += 1
        if self._metrics is not None:
            self._metrics.inc("clipjobs_suno_rate_limited_total")
        pipeline_log.warning(
            "Suno rate limit hit: pausing Suno calls of every process for %.1f s,"
            " then at most %d per %g s",
            (row["paused_until"] - now).total_seconds(),
            max(1, self.limit >> row["level"]),
            self.window.total_seconds(),
        )

    async def status(self) -> BudgetStatus:
        """The calls counted now, the pause and the calls waiting, in one query.

        ``waiting`` is this process's waiting calls plus one for
        each other process with a live waiter (each has at least one).
        """
        now = self._clock.now()
        row = await self._fetchrow("status", self.name, now, self.waiter_id, self._live)
        assert row is not None  # the query always returns one row
        level, limited_at, paused = row["level"] or 0, row["limited_at"], row["paused_until"]
        slowdown = 0
        if level and limited_at is not None:
            slowdown = max(0, level - int((now - limited_at) / self.recover))
        return BudgetStatus(
            limit=max(1, self.limit >> slowdown),
            window_s=self.window.total_seconds(),
            counted_until=tuple(row["counted"]),
            waiting=self.waiting + row["others"],
            paused_until=paused if paused is not None and paused > now else None,
            last_started_at=row["last_started_at"] if self._pacing else None,
        )

    async def aclose(self) -> None:
        """Fail every waiter with SunoTransient, stop, leave the shared queue; idempotent."""
        if self._closed:
            return
        self._closed = True
        for ticket in self._heap:
            if not ticket.future.done():
                ticket.future.set_exception(SunoTransient("the Suno budget is closed"))
        self._heap.clear()
        self._wake.set()
        dispatcher, self._dispatcher = self._dispatcher, None
        if dispatcher is not None:
            # It finishes the round trip it is in (a turn granted meanwhile goes back).
            try:
                await asyncio.wait_for(dispatcher, self._command_timeout_s)
            except (TimeoutError, asyncio.CancelledError):
                dispatcher.cancel()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            if self._registered:
                with contextlib.suppress(*_SUPPRESSED), edge():
                    await pool.execute(self._sql["forget"], self.name, self.waiter_id)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pool.close(), 5.0)
        finally:
            pool.terminate()

    # --- what tests and operators read --------------------------------------------

    @property
    def waiting(self) -> int:
        """Calls of this process waiting for their turn."""
        return sum(1 for t in self._heap if not t.future.done())

    async def settle(self) -> None:
        """Return once nothing more happens until the clock moves or a call arrives (tests).

        With a ``FakeClock``: the dispatcher has asked the database for every
        waiter it can serve at the clock's time and sleeps, and every turn
        given back in the background is back.
        """
        while True:
            for _ in range(5):
                await asyncio.sleep(0)
            busy = [t for t in self._background if not t.done()]
            if busy:
                await asyncio.gather(*busy, return_exceptions=True)
                continue
            quiet = self._dispatcher is None or self._dispatcher.done() or self._parked
            due = self._parked_until is not None and self._parked_until <= self._clock.now()
            if quiet and not due and not self._wake.is_set():
                return
            await asyncio.sleep(0.001)

    # --- inside -------------------------------------------------------------------

    def _head(self) -> _Ticket | None:
        while self._heap and self._heap[0].future.done():
            heapq.heappop(self._heap)
        return self._heap[0] if self._heap else None

    async def _dispatch(self) -> None:
        """Serve the local head, one round trip at a time, until the budget closes."""
        while not self._closed:
            self._wake.clear()
            head = self._head()
            if head is None:
                if self._registered:
                    # Leave the shared queue so no other process waits behind nobody.
                    await self._best_effort("forget", self.name, self.waiter_id)
                    self._registered = False
                await self._park(None)
                continue
            now = self._clock.now()
            try:
                row = await self._take(head.priority, head.queued_at, now, register=True)
            except ClipjobsError as exc:
                self._registered = False  # unknown; a stale row is ignored after live_s
                self._fail_waiters(exc)
                continue
            except Exception as exc:  # the dispatcher must outlive any one failure
                pipeline_log.exception("the shared Suno budget failed to take a turn")
                self._registered = False
                self._fail_waiters(StoreUnavailable(f"the shared Suno budget failed: {exc!r}"))
                continue
            call_id = row["call_id"]
            if call_id is not None:
                self._registered = False
                slot = Slot(now, Priority(head.priority), call_id)
                if head.future.done():  # cancelled (or closed) while its turn was taken
                    await self.unused(slot)
                else:
                    head.future.set_result(slot)
                continue
            self._registered = True
            retry_at: datetime = row["retry_at"]
            if row["behind"]:
                # Another process's waiter goes first: ask again soon after it has.
                retry_at = max(retry_at, now + self._retry)
            # Ask again within refresh_s whatever happens: the waiter row stays live.
            await self._park(min(retry_at, now + self._refresh))

    async def _park(self, until: datetime | None) -> None:
        """Sleep until ``until`` on the clock (None: until woken), or until woken."""
        if self._wake.is_set() or self._closed:
            return
        self._parked, self._parked_until = True, until
        waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(self._wake.wait())]
        if until is not None:
            seconds = (until - self._clock.now()).total_seconds()
            waits.append(asyncio.ensure_future(self._clock.sleep(seconds)))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._parked, self._parked_until = False, None
            for fut in waits:
                fut.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    def _fail_waiters(self, exc: ClipjobsError) -> None:
        pipeline_log.warning("the shared Suno budget is unreachable: %s", exc)
        for ticket in self._heap:
            if not ticket.future.done():
                ticket.future.set_exception(exc)
        self._heap.clear()

    async def _take(
        self, priority: int, queued_at: datetime, now: datetime, *, register: bool
    ) -> asyncpg.Record:
        row = await self._fetchrow(
            "take",
            self.name,
            self.waiter_id,
            register,
            priority,
            queued_at,
            now,
            self.owner,
            self.limit,
            self.window,
            self.recover,
            self._live,
            self._pacing,
        )
        assert row is not None  # a function with OUT parameters returns one row
        return row

    async def _fetchrow(self, key: str, *args: object) -> asyncpg.Record | None:
        pool = self._pool
        if pool is None:
            raise StoreUnavailable("the PostgreSQL budget is closed or not open")
        with edge():
            return await pool.fetchrow(self._sql[key], *args)

    async def _best_effort(self, key: str, *args: object) -> None:
        """Run a statement whose failure only makes the record more cautious: log it."""
        pool = self._pool
        if pool is None:
            return
        try:
            with edge():
                await pool.execute(self._sql[key], *args)
        except ClipjobsError as exc:
            pipeline_log.warning("the shared Suno budget could not record %s: %s", key, exc)

    def _in_background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


#: What closing tolerates while it leaves the queue: the database may be gone already.
_SUPPRESSED: tuple[type[BaseException], ...] = (ClipjobsError,)
