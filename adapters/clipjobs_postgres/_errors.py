"""The adapter's edge: every asyncpg/OS failure becomes a ``clipjobs.domain.errors`` error here.

Nothing else in ``clipjobs_postgres`` catches driver exceptions, except the
change listener, which retries on :data:`DRIVER_ERRORS` instead of raising.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg

from clipjobs.domain.errors import (
    ClipjobsError,
    ConcurrencyError,
    ConfigError,
    InvalidRequest,
    StoreCorrupt,
    StoreUnavailable,
)

__all__ = ["DRIVER_ERRORS", "edge", "translate"]

#: What the driver and the network raise. ``TimeoutError`` covers pool acquire
#: and connect timeouts; ``UnicodeEncodeError`` is asyncpg refusing a lone surrogate.
DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
    UnicodeEncodeError,
)


def translate(exc: BaseException) -> ClipjobsError:
    """The clipjobs error a driver failure means to callers."""
    if isinstance(exc, asyncpg.UniqueViolationError):
        return ConcurrencyError(f"a concurrent write won ({exc.constraint_name})")
    if isinstance(exc, asyncpg.SerializationError | asyncpg.DeadlockDetectedError):
        return ConcurrencyError(f"PostgreSQL aborted a conflicting write: {exc}")
    if isinstance(
        exc,
        asyncpg.CharacterNotInRepertoireError
        | asyncpg.UntranslatableCharacterError
        | UnicodeEncodeError,
    ) or (isinstance(exc, asyncpg.InterfaceError) and isinstance(exc, ValueError)):
        # asyncpg reports a value it cannot encode (a lone surrogate, an int
        # out of range) as its client-side DataError, an InterfaceError that
        # is also a ValueError: the input is at fault, and retrying never helps.
        return InvalidRequest(f"a value PostgreSQL cannot store (NUL or lone surrogate?): {exc}")
    if isinstance(exc, asyncpg.DataError):
        return InvalidRequest(f"a value PostgreSQL refused: {exc}")
    if isinstance(exc, asyncpg.InvalidSchemaNameError | asyncpg.UndefinedTableError):
        return StoreCorrupt(f"the clipjobs schema is missing or incomplete: {exc}")
    if isinstance(
        exc,
        asyncpg.InvalidAuthorizationSpecificationError
        | asyncpg.InvalidCatalogNameError
        | asyncpg.ClientConfigurationError,
    ):
        return ConfigError(f"PostgreSQL refused the configured connection: {exc}")
    if isinstance(exc, TimeoutError):
        return StoreUnavailable("PostgreSQL did not answer in time")
    return StoreUnavailable(f"PostgreSQL is unavailable: {type(exc).__name__}: {exc}")


@contextmanager
def edge() -> Iterator[None]:
    """Run a block whose driver exceptions must leave as clipjobs errors."""
    try:
        yield
    except DRIVER_ERRORS as exc:
        raise translate(exc) from exc
