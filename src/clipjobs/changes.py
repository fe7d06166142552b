"""In-process change notification for stores (the change feed's local half).

A store calls :meth:`ChangeNotifier.notify` after a commit is durable; SSE and
long-poll handlers wait with :meth:`ChangeNotifier.wait` instead of polling
the database. Stores shared by several processes feed remote commits in too
(PostgreSQL's LISTEN/NOTIFY).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

__all__ = ["ChangeNotifier"]


class ChangeNotifier:
    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}

    def notify(self, job_id: str) -> None:
        """Wake everyone waiting on ``job_id``."""
        for fut in self._waiters.pop(job_id, ()):
            if not fut.done():
                fut.set_result(None)

    def notify_all(self) -> None:
        """Wake every waiter (after a reconnect, when changes may have been missed)."""
        for job_id in list(self._waiters):
            self.notify(job_id)

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
            finally:
                waiters = self._waiters.get(job_id)
                if waiters is not None:
                    waiters.discard(fut)
                    if not waiters:
                        del self._waiters[job_id]
                if not fut.done():
                    fut.cancel()
