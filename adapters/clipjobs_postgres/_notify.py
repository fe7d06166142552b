"""The PostgreSQL store's subscriptions and outbox (``NotifyStore``), as a mixin.

``enqueue`` runs inside the append's transaction, so a commit's deliveries
land with it or not at all. A claim locks due rows ``FOR UPDATE SKIP LOCKED``
and writes the lease in the same statement: two processes never hold one
delivery at once, and a dead process's leases simply run out.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Collection
from datetime import datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any

import asyncpg

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

from ._schema import render

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    _Conn = PoolConnectionProxy[asyncpg.Record]
else:
    _Conn = Any

__all__ = ["PostgresNotify", "enqueue"]

_ENQUEUE = """
    INSERT INTO {s}.notify_deliveries
        (subscription_id, job_id, version, type, user_id, event_at, status, attempts, next_at)
    SELECT s.id, $1, n.version, n.type, s.user_id, n.at, 'pending', 0, n.at
    FROM {s}.notify_subscriptions AS s,
         unnest($3::integer[], $4::text[], $5::timestamptz[]) AS n (version, type, at)
    WHERE s.user_id = $2 AND n.type = ANY (s.events)
    ON CONFLICT DO NOTHING
"""
_DELIVERY = ", ".join(f"d.{name}" for name in row_fields(Delivery))
_SUBSCRIPTION = ", ".join(row_fields(Subscription))
_ATTEMPT = ", ".join(row_fields(Attempt))


def _insert(table: str, cls: type[Subscription | Attempt]) -> str:
    """An INSERT of one ``row(value)`` of ``cls``."""
    names = row_fields(cls)
    marks = ", ".join(f"${n}" for n in range(1, len(names) + 1))
    return f"INSERT INTO {{s}}.{table} ({', '.join(names)}) VALUES ({marks})"


_INSERT_SUBSCRIPTION = _insert("notify_subscriptions", Subscription)
_INSERT_ATTEMPT = _insert("notify_attempts", Attempt)
_CLAIM = f"""
    WITH picked AS (
        SELECT subscription_id, job_id, version FROM {{s}}.notify_deliveries
        WHERE status = 'pending' AND next_at <= $1
          AND (lease_until IS NULL OR lease_until <= $1)
          AND NOT (subscription_id = ANY ($5::text[]))
        ORDER BY next_at, job_id LIMIT $2
        FOR UPDATE SKIP LOCKED
    )
    UPDATE {{s}}.notify_deliveries AS d SET lease_owner = $3, lease_until = $4
    FROM picked
    WHERE d.subscription_id = picked.subscription_id AND d.job_id = picked.job_id
      AND d.version = picked.version
    RETURNING {_DELIVERY}
"""


@cache
def _sql(sql: str, schema: str) -> str:
    return render(sql, schema)


async def enqueue(conn: _Conn, commit: Commit, schema: str) -> None:
    """One delivery per subscription of the job's user that wants an event of this commit."""
    found = notifications(commit.events, commit.expected_version + 1)
    if not found:
        return
    await conn.execute(
        _sql(_ENQUEUE, schema),
        commit.job_id,
        commit.state.user_id,
        [version for version, _, _ in found],
        [kind for _, kind, _ in found],
        [at for _, _, at in found],
    )


def _stored(value: Any) -> Any:
    """A field as a column takes it: event types as a ``text[]``, the rest as they are."""
    return list(value) if isinstance(value, tuple) else value


class PostgresNotify:
    """Mixed into ``PostgresEventStore``, whose pool it uses."""

    _schema: str

    if TYPE_CHECKING:

        def _connection(self) -> contextlib.AbstractAsyncContextManager[_Conn]: ...

    def _q(self, sql: str) -> str:
        return _sql(sql, self._schema)

    async def _rows(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async with self._connection() as conn:
            return await conn.fetch(self._q(sql), *args)

    @contextlib.asynccontextmanager
    async def _tx(self) -> AsyncIterator[_Conn]:
        async with self._connection() as conn, conn.transaction():
            yield conn

    async def add_subscription(self, subscription: Subscription, *, limit: int) -> None:
        user = subscription.user_id
        async with self._tx() as conn:
            # One user's concurrent adds (from any process) take turns: the count holds.
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext($1))", f"clipjobs-notify:{user}"
            )
            owned = await conn.fetchval(
                self._q("SELECT count(*) FROM {s}.notify_subscriptions WHERE user_id = $1"), user
            )
            if owned >= limit:
                raise TooManySubscriptions(limit)
            await conn.execute(self._q(_INSERT_SUBSCRIPTION), *row(subscription, _stored))

    async def list_subscriptions(self, user_id: str) -> list[Subscription]:
        rows = await self._rows(
            f"SELECT {_SUBSCRIPTION} FROM {{s}}.notify_subscriptions"
            " WHERE user_id = $1 ORDER BY created_at, id",
            user_id,
        )
        return [subscription_from_row(r) for r in rows]

    async def delete_subscription(self, user_id: str, subscription_id: str) -> bool:
        async with self._tx() as conn:
            gone = await conn.fetchval(
                self._q(
                    "DELETE FROM {s}.notify_subscriptions WHERE id = $1 AND user_id = $2"
                    " RETURNING id"
                ),
                subscription_id,
                user_id,
            )
            if gone is None:
                return False
            for table in ("notify_deliveries", "notify_attempts"):
                await conn.execute(
                    self._q(f"DELETE FROM {{s}}.{table} WHERE subscription_id = $1"),
                    subscription_id,
                )
        return True

    async def claim_deliveries(
        self,
        now: datetime,
        *,
        owner: str,
        limit: int,
        lease_s: float,
        skip: Collection[str] = (),
    ) -> list[tuple[Delivery, Subscription]]:
        until = now + timedelta(seconds=lease_s)
        async with self._connection() as conn:
            rows = await conn.fetch(self._q(_CLAIM), now, max(0, limit), owner, until, list(skip))
            if not rows:
                return []
            subs = await conn.fetch(
                self._q(
                    f"SELECT {_SUBSCRIPTION} FROM {{s}}.notify_subscriptions WHERE id = ANY ($1)"
                ),
                list({r["subscription_id"] for r in rows}),
            )
        by_id = {r["id"]: subscription_from_row(r) for r in subs}
        found = [delivery_from_row(r) for r in rows]
        found.sort(key=lambda d: (d.next_at or now, d.job_id))
        # A subscription deleted between the two reads: its deliveries went with it.
        return [(d, by_id[d.subscription_id]) for d in found if d.subscription_id in by_id]

    async def finish_attempt(self, attempt: Attempt, *, owner: str, status: DeliveryStatus) -> bool:
        a = attempt
        async with self._tx() as conn:
            holder = await conn.fetchrow(
                self._q(
                    "SELECT lease_owner FROM {s}.notify_deliveries"
                    " WHERE subscription_id = $1 AND job_id = $2 AND version = $3 FOR UPDATE"
                ),
                a.subscription_id,
                a.job_id,
                a.version,
            )
            if holder is None:
                return False  # the subscription was deleted meanwhile
            await conn.execute(self._q(_INSERT_ATTEMPT), *row(a))
            if holder["lease_owner"] != owner:
                return False
            await conn.execute(
                self._q(
                    "UPDATE {s}.notify_deliveries SET status = $4, attempts = attempts + 1,"
                    " next_at = $5, lease_owner = NULL, lease_until = NULL"
                    " WHERE subscription_id = $1 AND job_id = $2 AND version = $3"
                ),
                a.subscription_id,
                a.job_id,
                a.version,
                status.value,
                next_due(a, status),
            )
        return True

    async def deliveries(self, subscription_id: str) -> list[Delivery]:
        rows = await self._rows(
            f"SELECT {_DELIVERY} FROM {{s}}.notify_deliveries AS d"
            " WHERE d.subscription_id = $1 ORDER BY d.event_at, d.job_id, d.version",
            subscription_id,
        )
        return [delivery_from_row(r) for r in rows]

    async def attempts(
        self,
        *,
        subscription_id: str | None = None,
        job_id: str | None = None,
        limit: int = 50,
    ) -> list[Attempt]:
        rows = await self._rows(
            f"SELECT {_ATTEMPT} FROM {{s}}.notify_attempts"
            " WHERE ($1::text IS NULL OR subscription_id = $1)"
            " AND ($2::text IS NULL OR job_id = $2)"
            " ORDER BY at DESC, id DESC LIMIT $3",
            subscription_id,
            job_id,
            max(0, limit),
        )
        return [attempt_from_row(r) for r in rows]
