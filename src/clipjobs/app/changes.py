"""In-process change notification for stores (the change feed's local half).

A store calls :meth:`ChangeNotifier.notify` after a commit is durable; SSE and
long-poll handlers wait with :meth:`ChangeNotifier.wait` instead of polling
the database. Stores shared by several processes feed remote commits in too
(PostgreSQL's LISTEN/NOTIFY).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

__all__ = ["ChangeFeed", "ChangeNotifier"]


class ChangeFeed:
    """Every job id changed since the feed was opened: what fleet-wide streams read.

    Ids collect in a set until :meth:`next` takes them (a job that changed
    three times is read once, as it is now). When more than ``limit`` pile up,
    or the store's own feed may have missed changes (a reconnect), they are
    dropped and ``missed`` is reported instead: the reader looks again at
    everything it shows. Close it (or use ``with``) when done.
    """

    def __init__(self, owner: ChangeNotifier, limit: int = 10_000) -> None:
        self._owner = owner
        self._limit = limit
        self._ids: dict[str, None] = {}
        self._missed = False
        self._ready = asyncio.Event()

    def __enter__(self) -> ChangeFeed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._owner._feeds.discard(self)
        self._ready.set()

    def _push(self, job_id: str) -> None:
        if len(self._ids) >= self._limit:
            self._lost()
            return
        self._ids[job_id] = None
        self._ready.set()

    def _lost(self) -> None:
        self._ids.clear()
        self._missed = True
        self._ready.set()

    async def next(self, timeout: float) -> tuple[list[str], bool]:
        """``(job ids, missed)`` once something changed, or ``([], False)`` after ``timeout``."""
        if not self._ready.is_set():
            try:
                await asyncio.wait_for(self._ready.wait(), max(0.0, timeout))
            except TimeoutError:
                return [], False
        ids, missed = list(self._ids), self._missed
        self._ids.clear()
        self._missed = False
        self._ready.clear()
        return ids, missed


class ChangeNotifier:
    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        self._feeds: set[ChangeFeed] = set()

    def notify(self, job_id: str) -> None:
        """Wake everyone waiting on ``job_id``, and tell every open feed."""
        for feed in self._feeds:
            feed._push(job_id)
        for fut in self._waiters.pop(job_id, ()):
            if not fut.done():
                fut.set_result(None)

    def notify_all(self) -> None:
        """Wake every waiter (after a reconnect, when changes may have been missed)."""
        for feed in self._feeds:
            feed._lost()
        for job_id in list(self._waiters):
            self.notify(job_id)

    def feed(self) -> ChangeFeed:
        """A new :class:`ChangeFeed` of every job changed from now on."""
        feed = ChangeFeed(self)
        self._feeds.add(feed)
        return feed

    @property
    def waiting(self) -> int:
        return sum(len(v) for v in self._waiters.values())

    async def wait(
        self,
        job_id: str,
        version: int,
        timeout: float,
        current_version: Callable[[], Awaitable[int | None]],
    ) -> bool:
        """True once the job's version exceeds ``version``, False after ``timeout``.

        Registers before reading the current version, so a commit between
        the read and the wait is never missed.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout)
        while True:
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.setdefault(job_id, set()).add(fut)
            try:
                now_version = await current_version()
                if now_version is not None and now_version > version:
                    return True
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                try:
                    await asyncio.wait_for(asyncio.shield(fut), remaining)
                except TimeoutError:
                    return False
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # Python 3.11's wait_for drops a cancel that lands as the change
                    # does: without this the caller would wait on, cancelled in vain.
                    raise asyncio.CancelledError
            finally:
                waiters = self._waiters.get(job_id)
                if waiters is not None:
                    waiters.discard(fut)
                    if not waiters:
                        del self._waiters[job_id]
                if not fut.done():
                    fut.cancel()
