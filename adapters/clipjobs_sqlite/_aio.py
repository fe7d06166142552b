"""One sqlite3 connection on a thread of its own, driven from asyncio.

sqlite3 blocks, so each connection lives on one thread (a single-worker
executor) and every call goes there and back. ``on_thread`` runs a whole
function there in one trip: a group of appends done statement by statement
would spend more crossing threads than on its fsync. This is what clipjobs
used aiosqlite for; owning the thirty lines spares reaching into aiosqlite's
private attributes for the one-trip call and for a failed open.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["CLOSED", "Connection", "connect", "on_thread"]

T = TypeVar("T")

#: What a call on a closed connection raises (as ValueError), for the error edge.
CLOSED = "Connection closed"


class Connection:
    """A sqlite3 connection owned by its own thread; calls run there, one at a time."""

    def __init__(self, conn: sqlite3.Connection, executor: ThreadPoolExecutor) -> None:
        self._conn = conn
        self._executor = executor
        self._closed = False

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(connection)`` on the connection's thread, awaited from the loop."""
        if self._closed:
            raise ValueError(CLOSED)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, self._conn)

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> None:
        await self.run(lambda conn: conn.execute(sql, tuple(params)).close())

    async def execute_fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        return await self.run(lambda conn: conn.execute(sql, tuple(params)).fetchall())

    async def close(self) -> None:
        """Close the connection and end its thread; idempotent."""
        if self._closed:
            return
        try:
            await self.run(sqlite3.Connection.close)
        finally:
            self._closed = True
            await asyncio.to_thread(self._executor.shutdown, wait=True)


async def connect(path: str | Path, **kwargs: Any) -> Connection:
    """Open ``path`` on a new thread (``kwargs`` go to ``sqlite3.connect``).

    A failed open ends the thread before the error leaves, so a CLI exiting on
    the error never leaves a thread behind.
    """
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clipjobs-sqlite")
    loop = asyncio.get_running_loop()
    try:
        conn = await loop.run_in_executor(
            executor, functools.partial(sqlite3.connect, path, **kwargs)
        )
    except BaseException:
        await asyncio.to_thread(executor.shutdown, wait=True)
        raise
    return Connection(conn, executor)


async def on_thread(db: Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Run ``fn(connection)`` on the connection's own thread, in one trip."""
    return await db.run(fn)
