"""The cross-process half of the change feed: LISTEN on a dedicated connection.

Commits anywhere on the database ``pg_notify('<schema>_changes', job_id)``;
this connection hears them and wakes local waiters. It lives outside the
pool (a pooled connection would be handed to queries and lose its LISTEN).
When the connection is lost it reconnects with backoff and wakes every
waiter, because notifications sent while it was gone are lost for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable

import asyncpg

from clipjobs.app.changes import ChangeNotifier

from ._errors import DRIVER_ERRORS

__all__ = ["ChangeListener"]

_log = logging.getLogger("clipjobs.postgres")


class ChangeListener:
    def __init__(
        self,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        channel: str,
        notifier: ChangeNotifier,
        *,
        min_backoff_s: float = 0.05,
        max_backoff_s: float = 5.0,
        keepalive_s: float = 15.0,
    ) -> None:
        self._connect = connect
        self._channel = channel
        self._notifier = notifier
        self._min_backoff_s = min_backoff_s
        self._max_backoff_s = max_backoff_s
        self._keepalive_s = keepalive_s
        self._conn: asyncpg.Connection | None = None
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        #: How many times the listener came back after losing its connection.
        self.reconnects = 0

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    @property
    def server_pid(self) -> int | None:
        """The listening backend's pid (diagnostics and tests)."""
        return self._conn.get_server_pid() if self._conn is not None else None

    async def start(self) -> None:
        """Connect and LISTEN; driver errors propagate for the caller's edge to translate."""
        self._conn = await self._listen()
        self._task = asyncio.create_task(self._supervise(), name=f"listen:{self._channel}")

    async def aclose(self) -> None:
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            # asyncpg.connect() can swallow a cancellation that lands while it
            # connects (seen on Python 3.11 with the server unreachable): the
            # reconnect loop would then go on forever and ``await task`` never
            # return. Cancel until the task is really done; _stopping ends the loop.
            while not task.done():
                task.cancel()
                await asyncio.wait([task], timeout=1.0)
            if not task.cancelled() and task.exception() is not None:
                _log.warning("the LISTEN supervisor failed: %r", task.exception())
        await self._drop()

    async def _listen(self) -> asyncpg.Connection:
        self._lost.clear()
        conn = await self._connect()
        # Ours before LISTEN is sent, so a connection lost during that round
        # trip is noticed at once rather than at the next keep-alive.
        self._conn = conn
        try:
            conn.add_termination_listener(self._on_terminated)
            await conn.add_listener(self._channel, self._on_notify)
        except BaseException:
            self._conn = None
            conn.terminate()
            raise
        return conn

    def _on_terminated(self, conn: object) -> None:
        if conn is self._conn:
            self._lost.set()

    def _on_notify(self, conn: object, pid: int, channel: str, payload: object) -> None:
        if isinstance(payload, str):
            self._notifier.notify(payload)

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        conn.remove_termination_listener(self._on_terminated)
        try:
            with contextlib.suppress(*DRIVER_ERRORS):
                await asyncio.wait_for(conn.close(), 2.0)
        finally:
            # Cancelled or failed mid-close: never leave a socket behind.
            if not conn.is_closed():
                conn.terminate()

    async def _alive(self) -> bool:
        conn = self._conn
        if conn is None or conn.is_closed():
            return False
        try:
            await asyncio.wait_for(conn.fetchval("SELECT 1"), 5.0)
        except DRIVER_ERRORS:
            return False
        return True

    async def _supervise(self) -> None:
        while not self._stopping:
            try:
                await asyncio.wait_for(self._lost.wait(), self._keepalive_s)
            except TimeoutError:
                # No termination seen, but a half-open TCP connection looks the
                # same: ask the server.
                if await self._alive():
                    continue
            _log.warning("lost the LISTEN connection for %s; reconnecting", self._channel)
            await self._drop()
            await self._reconnect()
            self.reconnects += 1
            # Whatever was committed while we were deaf will never be announced.
            self._notifier.notify_all()

    async def _reconnect(self) -> None:
        delay = self._min_backoff_s
        while not self._stopping:
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            try:
                self._conn = await self._listen()
            except DRIVER_ERRORS as exc:
                _log.info("LISTEN reconnect failed (%s); retrying", exc)
                delay = min(delay * 2, self._max_backoff_s)
                continue
            _log.info("LISTEN connection for %s is back", self._channel)
            return
