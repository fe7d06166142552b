"""The two things clipjobs needs from aiosqlite beyond its public API, in one place.

aiosqlite gives each connection its own thread and sends every call there.
It has no public way to run several statements in one trip, nor to wait for
the thread after a failed connect; both use its private attributes, which
have been stable since aiosqlite 0.10. ``tests/sqlite`` runs both paths.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import aiosqlite

__all__ = ["connect", "on_thread"]

T = TypeVar("T")


async def connect(path: str | Path, **kwargs: Any) -> aiosqlite.Connection:
    """``aiosqlite.connect`` that, when the open fails, waits for the thread to end.

    aiosqlite stops its thread after a failed connect without waiting for
    it; if the event loop closes first (a CLI that exits on the error), the
    thread dies printing "Event loop is closed" instead of the clear error.
    """
    db = aiosqlite.connect(path, **kwargs)
    try:
        return await db
    except BaseException:
        await asyncio.to_thread(db._thread.join, 5.0)
        raise


async def on_thread(db: aiosqlite.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Run ``fn(connection)`` on the aiosqlite connection's own thread, in one trip.

    Each ``execute`` is a round trip to that thread (~150 µs on a small
    machine): a group of 100 appends done statement by statement would spend
    far more crossing threads than on its fsync. ``_execute`` and ``_conn``
    are what aiosqlite's own methods use.
    """
    result = await db._execute(lambda: fn(db._conn))  # type: ignore[no-untyped-call]
    return cast(T, result)
