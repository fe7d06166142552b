"""The adapter's edge: every sqlite3/OS failure becomes a ``clipjobs.domain.errors`` error here.

Nothing else in ``clipjobs_sqlite`` decides what a driver exception means:
the store wraps each public method in :func:`edge`, and the writer hands the
exceptions its thread caught to :func:`translate`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from clipjobs.domain.errors import (
    ClipjobsError,
    ConcurrencyError,
    InvalidRequest,
    StoreCorrupt,
    StoreUnavailable,
)

from ._aio import CLOSED

__all__ = ["edge", "translate"]

_LOCKED = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}
_DAMAGED = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_FORMAT}
_READ_ONLY = {sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM}
#: What a call on a closed connection raises (as ValueError).
_CLOSED = {CLOSED}


def translate(exc: BaseException, path: str) -> ClipjobsError:
    """The clipjobs error a failure while using the database at ``path`` means to callers."""
    if isinstance(exc, ClipjobsError):
        return exc
    if isinstance(exc, sqlite3.Error):
        # sqlite_errorcode is the extended code; the low byte is the primary one.
        code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
        if code in _LOCKED:
            return StoreUnavailable(
                f"the database {path} is locked by another process or connection: {exc}"
            )
        if code in _READ_ONLY:
            return StoreUnavailable(f"the database {path} is read-only: {exc}")
        if code in _DAMAGED:
            return StoreCorrupt(f"{path} is not a clipjobs database or it is damaged: {exc}")
        if isinstance(exc, sqlite3.IntegrityError):
            return ConcurrencyError(f"a concurrent write won in {path}: {exc}")
        return StoreUnavailable(f"the database {path} cannot be used: {exc}")
    if isinstance(exc, UnicodeEncodeError):
        return InvalidRequest(f"text SQLite cannot store (a lone surrogate): {exc.reason}")
    if isinstance(exc, ValueError) and str(exc) in _CLOSED:
        return StoreUnavailable(f"the store for {path} is closed")
    if isinstance(exc, OSError):
        return StoreUnavailable(f"the database {path} cannot be used: {exc}")
    # Anything else is a bug in clipjobs, not a database condition: let it show.
    raise exc


@contextmanager
def edge(path: str) -> Iterator[None]:
    """Run a block whose driver exceptions must leave as clipjobs errors naming ``path``."""
    try:
        yield
    except (sqlite3.Error, UnicodeEncodeError, ValueError, OSError) as exc:
        raise translate(exc, path) from exc
