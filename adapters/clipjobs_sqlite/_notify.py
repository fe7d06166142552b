"""The SQLite store's subscriptions and outbox (``clipjobs.app.notify.NotifyStore``), as a mixin.

Writes go through the store's one writer (so a claim is atomic: nothing else
writes between its select and its update); reads through its reader.
``enqueue`` runs inside the append's savepoint: the deliveries of a commit
land with it or not at all.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from clipjobs.app.notify import (
    Attempt,
    Delivery,
    DeliveryStatus,
    Subscription,
    TooManySubscriptions,
    attempt_from_row,
    delivery_from_row,
    next_due,
    notifications,
    row,
    row_fields,
    subscription_from_row,
)
from clipjobs.app.ports import Commit
from clipjobs.domain.codec import parse_ts

from ._errors import edge
from ._schema import ts

if TYPE_CHECKING:
    from ._writer import GroupWriter

__all__ = ["SQLiteNotify", "enqueue"]

_ENQUEUE = """
    INSERT OR IGNORE INTO notify_deliveries
        (subscription_id, job_id, version, type, user_id, event_at, status, attempts, next_at)
    SELECT id, ?, ?, ?, user_id, ?, 'pending', 0, ?
    FROM notify_subscriptions WHERE user_id = ? AND instr(events, ?) > 0
"""
_DELIVERY = ", ".join(f"d.{name}" for name in row_fields(Delivery))
_SUBSCRIPTION = ", ".join(f"s.{name}" for name in row_fields(Subscription))
_ATTEMPT = ", ".join(row_fields(Attempt))
#: Where a joined delivery-and-subscription row turns from the one to the other.
_SPLIT = len(row_fields(Delivery))


def enqueue(conn: sqlite3.Connection, commit: Commit) -> None:
    """One delivery per subscription of the job's user that wants an event of this commit."""
    found = notifications(commit.events, commit.expected_version + 1)
    for version, kind, at in found:
        when = ts(at)
        conn.execute(
            _ENQUEUE,
            (commit.job_id, version, kind, when, when, commit.state.user_id, f",{kind},"),
        )


def _stored(value: Any) -> Any:
    """A field as a column keeps it: times as fixed-width text, event types as ``,a,b,``."""
    if isinstance(value, datetime):
        return ts(value)
    if isinstance(value, tuple):
        return "," + ",".join(value) + ","
    return value


def _events(column: str) -> tuple[str, ...]:
    return tuple(e for e in column.split(",") if e)


def _subscription(values: Any) -> Subscription:
    return subscription_from_row(values, time=parse_ts, events=_events)


class SQLiteNotify:
    """Mixed into ``SQLiteEventStore``, whose writer and reader it uses."""

    _path: str

    if TYPE_CHECKING:

        def _write(self) -> GroupWriter: ...

        async def _fetch(self, sql: str, params: tuple[Any, ...]) -> list[sqlite3.Row]: ...

    async def add_subscription(self, subscription: Subscription, *, limit: int) -> None:
        user, values = subscription.user_id, row(subscription, _stored)

        def run(conn: sqlite3.Connection) -> None:
            (owned,) = conn.execute(
                "SELECT count(*) FROM notify_subscriptions WHERE user_id = ?", (user,)
            ).fetchone()
            if owned >= limit:
                raise TooManySubscriptions(limit)
            conn.execute("INSERT INTO notify_subscriptions VALUES (?, ?, ?, ?, ?, ?)", values)

        with edge(self._path):
            await self._write().submit(run)

    async def list_subscriptions(self, user_id: str) -> list[Subscription]:
        rows = await self._fetch(
            f"SELECT {_SUBSCRIPTION} FROM notify_subscriptions AS s"  # noqa: S608 - constant columns
            " WHERE s.user_id = ? ORDER BY s.created_at, s.id",
            (user_id,),
        )
        return [_subscription(r) for r in rows]

    async def delete_subscription(self, user_id: str, subscription_id: str) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            gone = conn.execute(
                "DELETE FROM notify_subscriptions WHERE id = ? AND user_id = ?",
                (subscription_id, user_id),
            ).rowcount
            if gone:
                for table in ("notify_deliveries", "notify_attempts"):
                    conn.execute(
                        f"DELETE FROM {table} WHERE subscription_id = ?",  # noqa: S608 - constant
                        (subscription_id,),
                    )
            return gone == 1

        with edge(self._path):
            return await self._write().submit(run)

    async def claim_deliveries(
        self,
        now: datetime,
        *,
        owner: str,
        limit: int,
        lease_s: float,
        skip: Collection[str] = (),
    ) -> list[tuple[Delivery, Subscription]]:
        at, until = ts(now), ts(now + timedelta(seconds=lease_s))
        skipped = tuple(skip)
        not_in = (
            f" AND d.subscription_id NOT IN ({', '.join('?' * len(skipped))})" if skipped else ""
        )
        query = (
            f"SELECT {_DELIVERY}, {_SUBSCRIPTION} FROM notify_deliveries AS d"  # noqa: S608 - constant
            " JOIN notify_subscriptions AS s ON s.id = d.subscription_id"
            " WHERE d.status = 'pending' AND d.next_at <= ?"
            " AND (d.lease_until IS NULL OR d.lease_until <= ?)"
            f"{not_in} ORDER BY d.next_at, d.job_id LIMIT ?"
        )

        def run(conn: sqlite3.Connection) -> list[tuple[Delivery, Subscription]]:
            rows = conn.execute(query, (at, at, *skipped, max(0, limit))).fetchall()
            conn.executemany(
                "UPDATE notify_deliveries SET lease_owner = ?, lease_until = ?"
                " WHERE subscription_id = ? AND job_id = ? AND version = ?",
                [(owner, until, r[0], r[1], r[2]) for r in rows],
            )
            return [
                (delivery_from_row(r[:_SPLIT], time=parse_ts), _subscription(r[_SPLIT:]))
                for r in rows
            ]

        with edge(self._path):
            return await self._write().submit(run)

    async def finish_attempt(self, attempt: Attempt, *, owner: str, status: DeliveryStatus) -> bool:
        key = (attempt.subscription_id, attempt.job_id, attempt.version)
        next_at = _stored(next_due(attempt, status))
        values = row(attempt, _stored)

        def run(conn: sqlite3.Connection) -> bool:
            exists = conn.execute(
                "SELECT lease_owner FROM notify_deliveries"
                " WHERE subscription_id = ? AND job_id = ? AND version = ?",
                key,
            ).fetchone()
            if exists is None:
                return False  # the subscription was deleted meanwhile
            conn.execute(
                f"INSERT INTO notify_attempts ({_ATTEMPT}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
                values,
            )
            return (
                conn.execute(
                    "UPDATE notify_deliveries SET status = ?, attempts = attempts + 1,"
                    " next_at = ?, lease_owner = NULL, lease_until = NULL"
                    " WHERE subscription_id = ? AND job_id = ? AND version = ?"
                    " AND lease_owner = ?",
                    (status.value, next_at, *key, owner),
                ).rowcount
                == 1
            )

        with edge(self._path):
            return await self._write().submit(run)

    async def deliveries(self, subscription_id: str) -> list[Delivery]:
        rows = await self._fetch(
            f"SELECT {_DELIVERY} FROM notify_deliveries AS d"  # noqa: S608 - constant columns
            " WHERE d.subscription_id = ? ORDER BY d.event_at, d.job_id, d.version",
            (subscription_id,),
        )
        return [delivery_from_row(r, time=parse_ts) for r in rows]

    async def attempts(
        self,
        *,
        subscription_id: str | None = None,
        job_id: str | None = None,
        limit: int = 50,
    ) -> list[Attempt]:
        where, params = [], []
        if subscription_id is not None:
            where.append("subscription_id = ?")
            params.append(subscription_id)
        if job_id is not None:
            where.append("job_id = ?")
            params.append(job_id)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = await self._fetch(
            f"SELECT {_ATTEMPT} FROM notify_attempts{clause}"  # noqa: S608 - constant columns
            " ORDER BY at DESC, id DESC LIMIT ?",
            (*params, max(0, limit)),
        )
        return [attempt_from_row(r, time=parse_ts) for r in rows]
