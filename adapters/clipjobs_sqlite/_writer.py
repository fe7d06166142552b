"""Group commit: one writer task turns every concurrent write into one transaction.

Callers enqueue operations; the writer takes whatever is queued (up to
``max_group``), runs them on the connection's thread in one ``BEGIN
IMMEDIATE … COMMIT``, each inside its own savepoint so a failing one is
rolled back alone, and answers every caller only after the COMMIT returned.
With ``synchronous=FULL`` that COMMIT is one fsync of the WAL for the whole
group: every append that returned is on disk, and a hundred concurrent
appends pay for one fsync instead of a hundred.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from clipjobs.domain.errors import ClipjobsError, StoreUnavailable

from ._aio import Connection, on_thread
from ._errors import translate

__all__ = ["GroupWriter"]

T = TypeVar("T")


class _Op:
    __slots__ = ("fn", "future", "job_id")

    def __init__(
        self,
        fn: Callable[[sqlite3.Connection], Any],
        future: asyncio.Future[Any],
        job_id: str | None,
    ) -> None:
        self.fn = fn
        self.future = future
        self.job_id = job_id


_STOP = object()


class GroupWriter:
    """The one task that writes; ``submit`` from anywhere on the loop."""

    def __init__(
        self,
        db: Connection,
        path: str,
        *,
        max_group: int,
        committed: Callable[[Iterable[str]], None],
    ) -> None:
        self._db = db
        self._path = path
        self._max_group = max_group
        self._committed = committed
        self._queue: asyncio.Queue[_Op | object] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.groups = 0
        self.ops = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="clipjobs-sqlite")

    async def submit(self, fn: Callable[[sqlite3.Connection], T], job_id: str | None = None) -> T:
        """Run ``fn`` in the next group; its result once that group is committed.

        ``job_id`` names the job whose waiters to wake after the commit.
        """
        if self._stopping or self._task is None or self._task.done():
            raise StoreUnavailable(f"the store for {self._path} is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Op(fn, future, job_id))
        return await future

    async def stop(self) -> None:
        """Finish what is queued, then stop; idempotent."""
        self._stopping = True
        if self._task is None:
            return
        if not self._task.done():
            self._queue.put_nowait(_STOP)
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        stop = False
        while not stop:
            first = await self._queue.get()
            group: list[_Op] = []
            item: _Op | object = first
            while True:
                if item is _STOP:
                    stop = True
                elif isinstance(item, _Op) and not item.future.done():
                    # A caller cancelled while queued gave up before anything was written.
                    group.append(item)
                if stop or len(group) >= self._max_group or self._queue.empty():
                    break
                item = self._queue.get_nowait()
            if group:
                await self._write(group)
        # Anyone who slipped in after the stop marker hears that the store closed.
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if isinstance(item, _Op) and not item.future.done():
                item.future.set_exception(StoreUnavailable(f"the store for {self._path} is closed"))

    async def _write(self, group: list[_Op]) -> None:
        try:
            outcomes = await on_thread(self._db, lambda conn: _run_group(conn, group))
        except Exception as exc:  # the group never ran, or the COMMIT failed: nothing landed
            for op in group:
                if not op.future.done():
                    op.future.set_exception(_as_error(exc, self._path))
            return
        except BaseException:
            for op in group:
                op.future.cancel()
            raise
        self.groups += 1
        self.ops += len(group)
        self._committed(
            op.job_id
            for op, (ok, _) in zip(group, outcomes, strict=True)
            if ok and op.job_id is not None
        )
        for op, (ok, value) in zip(group, outcomes, strict=True):
            if op.future.done():
                continue
            if ok:
                op.future.set_result(value)
            else:
                op.future.set_exception(_as_error(value, self._path))


def _as_error(exc: BaseException, path: str) -> BaseException:
    try:
        return translate(exc, path)
    except BaseException as unknown:  # not a database condition: hand it over as it is
        return unknown


def _run_group(conn: sqlite3.Connection, group: list[_Op]) -> list[tuple[bool, Any]]:
    """On the connection's thread: one transaction, one savepoint per operation."""
    outcomes: list[tuple[bool, Any]] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        for op in group:
            conn.execute("SAVEPOINT op")
            try:
                value = op.fn(conn)
            except (sqlite3.Error, ClipjobsError, ValueError, TypeError) as exc:
                if not conn.in_transaction:
                    # SQLite abandoned the whole transaction (disk full, I/O error).
                    raise
                conn.execute("ROLLBACK TO op")
                outcomes.append((False, exc))
            else:
                outcomes.append((True, value))
            conn.execute("RELEASE op")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return outcomes
