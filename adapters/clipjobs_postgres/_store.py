"""``PostgresEventStore``: job logs, projection rows, leases and the change feed on PostgreSQL.

Many clipjobs processes share one database. What keeps them honest:

- an append is one transaction that writes the events and the projection
  row only if the row is still at the expected version (the conditional
  UPDATE takes the row lock, and READ COMMITTED re-checks the version once
  a concurrent writer commits), and announces the job with ``pg_notify``,
  which PostgreSQL delivers on commit;
- unique indexes decide the races between new jobs (the channel lock, the
  idempotency key) — the database is the only arbiter that sees every process;
- a claim locks due job rows with ``FOR UPDATE SKIP LOCKED`` and takes the
  lease with an upsert that only overwrites an expired lease, in the same
  statement, so two processes never hold the same job's work at once and a
  dead process's leases run out. Lease times come from the caller's ``now``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Self

import asyncpg

from clipjobs.app.changes import ChangeFeed, ChangeNotifier
from clipjobs.app.ports import Commit, Due, Lease, OrphanCallback, RecordedEvent, WorkerInfo
from clipjobs.domain.codec import decode_event, decode_state, encode_event, encode_state
from clipjobs.domain.errors import (
    ChannelBusy,
    ConcurrencyError,
    IdempotencyConflict,
    InvalidRequest,
    StoreUnavailable,
)
from clipjobs.domain.fleet import JobFilter, PageKey
from clipjobs.domain.stages import Stage, Work
from clipjobs.domain.state import JobState

from ._errors import edge
from ._fleet import count_sql, find_sql
from ._listener import ChangeListener
from ._notify import PostgresNotify, enqueue
from ._retention import PostgresRetention
from ._schema import check_schema_name, migrate, render

__all__ = ["PostgresEventStore"]

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    _Conn = PoolConnectionProxy[asyncpg.Record]

_JOB_COLUMNS = (
    "job_id, version, stage, done, channel_id, user_id, task_id, idempotency_key,"
    " channel_lock, created_at, updated_at, work, due_at, deadline_at, state"
)

_INSERT_JOB = (
    f"INSERT INTO {{s}}.jobs ({_JOB_COLUMNS})"  # noqa: S608 -- constants only
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
    # No conflict target: a taken job id, channel lock or idempotency key all
    # leave the transaction usable, and _WHY_NOT_INSERTED says which it was.
    " ON CONFLICT DO NOTHING"
)

_UPDATE_JOB = (
    "UPDATE {s}.jobs SET version = $2, stage = $3, done = $4, channel_id = $5, user_id = $6,"
    " task_id = $7, idempotency_key = $8, channel_lock = $9, created_at = $10,"
    " updated_at = $11, work = $12, due_at = $13, deadline_at = $14, state = $15"
    " WHERE job_id = $1 AND version = $16"
)

_WHY_NOT_INSERTED = """
    SELECT 1 AS why, job_id FROM {s}.jobs WHERE job_id = $1
    UNION ALL SELECT 2, job_id FROM {s}.jobs WHERE channel_lock = $2
    UNION ALL SELECT 3, job_id FROM {s}.jobs WHERE user_id = $3 AND idempotency_key = $4
    ORDER BY why LIMIT 1
"""

_INSERT_EVENTS = """
    INSERT INTO {s}.events (job_id, version, type, payload, recorded_at)
    SELECT $1, e.version, e.type, e.payload, e.recorded_at
    FROM unnest($2::integer[], $3::text[], $4::text[], $5::timestamptz[])
        AS e(version, type, payload, recorded_at)
"""

# The due jobs of one kind of work, in claim order; $1 now, $2 work, $3 limit.
# SWEEP, RENDER and MEDIA: oldest due first.
_DUE = """
    SELECT j.job_id, j.state, j.user_id, j.{when} AS at,
           row_number() OVER (ORDER BY j.{when}, j.job_id) AS n
    FROM {s}.jobs AS j
    WHERE {which} AND j.{when} <= $1
      AND NOT EXISTS (
          SELECT 1 FROM {s}.leases AS l
          WHERE l.job_id = j.job_id AND l.work = $2 AND l.until > $1)
    ORDER BY j.{when}, j.job_id
    {limit}
"""
# SEND and POLL: the fair order (clipjobs.fair_order). A user's k-th oldest
# waiting job goes in round k; within a round, users served longest ago first
# (never served: first of all), then the user with the older oldest job.
_FAIR_DUE = """
    SELECT due.job_id, due.state, due.user_id, due.at,
           row_number() OVER (
               ORDER BY due.turn, coalesce(t.served, 0), due.head_at, due.head_id,
                        due.at, due.job_id
           ) AS n
    FROM (
        SELECT j.job_id, j.state, j.user_id, j.due_at AS at,
               row_number() OVER mine AS turn,
               first_value(j.due_at) OVER mine AS head_at,
               first_value(j.job_id) OVER mine AS head_id
        FROM {s}.jobs AS j
        WHERE NOT j.done AND j.work = $2 AND j.due_at <= $1
          AND NOT EXISTS (
              SELECT 1 FROM {s}.leases AS l
              WHERE l.job_id = j.job_id AND l.work = $2 AND l.until > $1)
        WINDOW mine AS (PARTITION BY j.user_id ORDER BY j.due_at, j.job_id)
    ) AS due
    LEFT JOIN {s}.turns AS t ON t.work = $2 AND t.user_id = due.user_id
    ORDER BY due.turn, coalesce(t.served, 0), due.head_at, due.head_id, due.at, due.job_id
    {limit}
"""
# $1 now, $2 work, $3 limit, $4 owner, $5 lease until. Rows are locked in queue
# order, skipping those a rival is claiming (the LIMIT counts only locked ones);
# the lease upsert only overwrites a lease that has run out.
_CLAIM = """
    WITH due AS (
        SELECT j.job_id, j.state, j.user_id, q.n
        FROM ({queue}) AS q
        JOIN {s}.jobs AS j ON j.job_id = q.job_id
        ORDER BY q.n
        LIMIT $3
        FOR UPDATE OF j SKIP LOCKED
    ), taken AS (
        -- The snapshot above may predate a rival's committed lease; the upsert
        -- sees the latest row and only overwrites a lease that has run out.
        INSERT INTO {s}.leases AS l (job_id, work, owner, until)
        SELECT job_id, $2, $4, $5 FROM due
        ON CONFLICT (job_id, work) DO UPDATE
            SET owner = excluded.owner, until = excluded.until
            WHERE l.until <= $1
        RETURNING l.job_id
    ), turns AS (
        INSERT INTO {s}.turns AS t (work, user_id, served)
        SELECT $2, user_id, nextval('{s}.handouts') FROM (
            SELECT due.user_id, max(due.n) AS n FROM due JOIN taken USING (job_id)
            WHERE {fair} GROUP BY due.user_id ORDER BY n
        ) AS served_now
        ON CONFLICT (work, user_id) DO UPDATE SET served = excluded.served
    )
    SELECT due.state FROM due JOIN taken USING (job_id) ORDER BY due.n
"""
#: Work handed out in the fair order (round-robin by user); the rest oldest first.
_FAIR = frozenset({Work.SEND, Work.POLL})


def _queue_sql(work: Work, limit: str = "LIMIT $3") -> str:
    """The due jobs of ``work`` in claim order: rows of (job_id, state, user_id, at, n)."""
    if work in _FAIR:
        sql = _FAIR_DUE
    else:
        when = "deadline_at" if work is Work.SWEEP else "due_at"
        # Media is kept after a job is done too (SPEC 10.4); the rest is work of undone jobs.
        which = {
            Work.SWEEP: "NOT j.done",
            Work.MEDIA: "j.work = $2",
        }.get(work, "NOT j.done AND j.work = $2")
        sql = _DUE.replace("{when}", when).replace("{which}", which)
    return sql.replace("{limit}", limit)


def _row(state: JobState) -> tuple[Any, ...]:
    """The projection row's columns, in ``_JOB_COLUMNS`` order."""
    work = state.work
    return (
        state.job_id,
        state.version,
        state.stage.value,
        state.done,
        state.channel_id,
        state.user_id,
        state.task_id,
        state.idempotency_key,
        state.channel_lock,
        state.created_at,
        state.updated_at,
        work.value if work is not None else None,
        state.due_at,
        state.deadline_at,
        encode_state(state),
    )


def _rowcount(status: str) -> int:
    # asyncpg returns the command tag: "INSERT 0 1", "UPDATE 0", "DELETE 3".
    return int(status.rsplit(" ", 1)[-1])


def _storable(text: str | None) -> str | None:
    # PostgreSQL text cannot hold NUL; orphans are diagnostics and must be kept anyway.
    return text.replace("\x00", "\ufffd") if text is not None else None


class PostgresEventStore(PostgresRetention, PostgresNotify):
    """An ``EventStore`` on PostgreSQL; several processes may share one schema.

    ``await PostgresEventStore.open(dsn)`` or ``async with PostgresEventStore(dsn)``.
    """

    def __init__(
        self,
        dsn: str,
        schema: str = "clipjobs",
        *,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout_s: float = 5.0,
        acquire_timeout_s: float = 10.0,
        command_timeout_s: float = 30.0,
        reconnect_backoff_s: tuple[float, float] = (0.05, 5.0),
        keepalive_s: float = 15.0,
    ) -> None:
        self._dsn = dsn
        self._schema = check_schema_name(schema)
        self._min_size = min_size
        self._max_size = max_size
        self._connect_timeout_s = connect_timeout_s
        self._acquire_timeout_s = acquire_timeout_s
        self._command_timeout_s = command_timeout_s
        self._channel = f"{schema}_changes"
        self._quoted = render("{s}", schema)
        self._changes = ChangeNotifier()
        self._listener = ChangeListener(
            self._connect_listener,
            self._channel,
            self._changes,
            min_backoff_s=reconnect_backoff_s[0],
            max_backoff_s=reconnect_backoff_s[1],
            keepalive_s=keepalive_s,
        )
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        self._closed = False
        self._queue_sql = {work: render(_queue_sql(work), schema) for work in Work}
        self._claim_sql = {
            work: render(
                _CLAIM.replace("{queue}", _queue_sql(work, limit="")).replace(
                    "{fair}", "TRUE" if work in _FAIR else "FALSE"
                ),
                schema,
            )
            for work in Work
        }
        self._sql = {
            name: render(sql, schema)
            for name, sql in {
                "insert_job": _INSERT_JOB,
                "update_job": _UPDATE_JOB,
                "why_not_inserted": _WHY_NOT_INSERTED,
                "insert_events": _INSERT_EVENTS,
                "load": "SELECT state FROM {s}.jobs WHERE job_id = $1",
                "version": "SELECT version FROM {s}.jobs WHERE job_id = $1",
                "read": "SELECT version, type, payload FROM {s}.events"
                " WHERE job_id = $1 AND version > $2 ORDER BY version",
                "by_task": "SELECT state FROM {s}.jobs WHERE task_id = $1"
                " ORDER BY created_at, job_id LIMIT 1",
                "by_key": "SELECT state FROM {s}.jobs WHERE user_id = $1 AND idempotency_key = $2",
                "holder": "SELECT state FROM {s}.jobs WHERE user_id = $1 AND channel_id = $2"
                " AND channel_lock IS NOT NULL LIMIT 1",
                "list": "SELECT state FROM {s}.jobs WHERE user_id = $1 AND channel_id = $2"
                " ORDER BY created_at DESC, job_id DESC LIMIT $3",
                "renew": "UPDATE {s}.leases SET until = $5"
                " WHERE job_id = $1 AND work = $2 AND owner = $3 AND until > $4",
                "release": "DELETE FROM {s}.leases WHERE job_id = $1 AND work = $2 AND owner = $3",
                "release_owner": "DELETE FROM {s}.leases WHERE owner = $1",
                "leases": "SELECT job_id, work, owner, until FROM {s}.leases"
                " WHERE $1::text IS NULL OR owner = $1 ORDER BY owner, job_id, work",
                "register": "INSERT INTO {s}.workers"
                " (worker_id, host, pid, started_at, heartbeat_at)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (worker_id) DO UPDATE SET"
                " host = excluded.host, pid = excluded.pid, started_at = excluded.started_at,"
                " heartbeat_at = excluded.heartbeat_at",
                "heartbeat": "UPDATE {s}.workers SET heartbeat_at = $2 WHERE worker_id = $1",
                "workers": "SELECT worker_id, host, pid, started_at, heartbeat_at FROM {s}.workers"
                " ORDER BY started_at, worker_id",
                "forget_worker": "DELETE FROM {s}.workers WHERE worker_id = $1",
                "active_by_user": "SELECT count(*) FROM {s}.jobs WHERE NOT done AND user_id = $1",
                "created": "SELECT count(*) FROM {s}.jobs WHERE user_id = $1 AND created_at >= $2",
                "secret_insert": "INSERT INTO {s}.secrets (name, value) VALUES ($1, $2)"
                " ON CONFLICT (name) DO NOTHING",
                "secret": "SELECT value FROM {s}.secrets WHERE name = $1",
                "orphan_insert": "INSERT INTO {s}.orphans (received_at, task_id, payload, reason)"
                " VALUES ($1, $2, $3, $4)",
                "orphans": "SELECT received_at, task_id, payload, reason FROM {s}.orphans"
                " ORDER BY id DESC LIMIT $1",
                "active": "SELECT count(*) FROM {s}.jobs WHERE NOT done",
                "drop": "DROP SCHEMA IF EXISTS {s} CASCADE",
            }.items()
        }

    @classmethod
    async def open(cls, dsn: str, schema: str = "clipjobs", **options: Any) -> Self:
        """Connect, migrate the schema forward, and start listening for changes."""
        store = cls(dsn, schema, **options)
        await store._open()
        return store

    @property
    def schema(self) -> str:
        return self._schema

    # --- lifecycle ------------------------------------------------------------

    async def _open(self) -> None:
        if self._pool is not None:
            return
        if self._closed:
            raise StoreUnavailable("the PostgreSQL store is closed")
        try:
            with edge():
                self._pool = await asyncpg.create_pool(
                    self._dsn,
                    min_size=self._min_size,
                    max_size=self._max_size,
                    timeout=self._connect_timeout_s,
                    command_timeout=self._command_timeout_s,
                    server_settings={"application_name": f"clipjobs:{self._schema}"},
                )
                async with self._pool.acquire(timeout=self._acquire_timeout_s) as conn:
                    await migrate(conn, self._schema)
                await self._listener.start()
        except BaseException:
            await self.aclose()
            raise

    async def _connect_listener(self) -> asyncpg.Connection:
        return await asyncpg.connect(
            self._dsn,
            timeout=self._connect_timeout_s,
            server_settings={"application_name": f"clipjobs-listen:{self._schema}"},
        )

    async def __aenter__(self) -> Self:
        await self._open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        self._changes.notify_all()
        await self._listener.aclose()
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pool.close(), 5.0)
            finally:
                pool.terminate()

    async def drop_schema(self) -> None:
        """Drop the schema and everything in it (tests; there is no undo)."""
        async with self._connection() as conn:
            await conn.execute(self._sql["drop"])

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[_Conn]:
        if self._closed or self._pool is None:
            raise StoreUnavailable("the PostgreSQL store is closed")
        with edge():
            async with self._pool.acquire(timeout=self._acquire_timeout_s) as conn:
                yield conn

    # --- append and read ----------------------------------------------------

    async def append(self, commit: Commit) -> None:
        if not commit.events:
            raise InvalidRequest("a commit needs at least one event")
        job_id, expected, state = commit.job_id, commit.expected_version, commit.state
        if state.version != expected + len(commit.events) or state.job_id != job_id:
            raise InvalidRequest("the commit's state does not follow from its events")
        row = _row(state)
        encoded = [encode_event(event) for event in commit.events]
        async with self._connection() as conn, conn.transaction():
            if expected == 0:
                await self._insert_job(conn, row, state)
            else:
                status = await conn.execute(self._sql["update_job"], *row, expected)
                if _rowcount(status) != 1:
                    raise ConcurrencyError(f"job {job_id} is not at version {expected}")
            await conn.execute(
                self._sql["insert_events"],
                job_id,
                list(range(expected + 1, state.version + 1)),
                [type_ for type_, _ in encoded],
                [payload for _, payload in encoded],
                [event.at for event in commit.events],
            )
            await enqueue(conn, commit, self._schema)  # the webhook outbox, same transaction
            await conn.execute("SELECT pg_notify($1, $2)", self._channel, job_id)
        self._changes.notify(job_id)

    async def _insert_job(self, conn: _Conn, row: tuple[Any, ...], state: JobState) -> None:
        # A conflicting job may finish between our insert and the lookup of
        # who holds the lock; then the insert is simply tried again.
        for _ in range(3):
            if _rowcount(await conn.execute(self._sql["insert_job"], *row)) == 1:
                return
            why = await conn.fetchrow(
                self._sql["why_not_inserted"],
                state.job_id,
                state.channel_lock,
                state.user_id,
                state.idempotency_key,
            )
            if why is None:
                continue
            if why["why"] == 1:
                raise ConcurrencyError(f"job {state.job_id} already exists")
            if why["why"] == 2:
                raise ChannelBusy(why["job_id"])
            raise IdempotencyConflict(why["job_id"])
        raise ConcurrencyError(f"job {state.job_id} kept conflicting with concurrent jobs")

    async def load(self, job_id: str) -> JobState | None:
        return await self._one_state("load", job_id)

    async def read(self, job_id: str, after_version: int = 0) -> list[RecordedEvent]:
        async with self._connection() as conn:
            rows = await conn.fetch(self._sql["read"], job_id, after_version)
        return [
            RecordedEvent(job_id, r["version"], decode_event(r["type"], r["payload"])) for r in rows
        ]

    async def _one_state(self, query: str, *args: object) -> JobState | None:
        async with self._connection() as conn:
            document = await conn.fetchval(self._sql[query], *args)
        return decode_state(document) if document is not None else None

    # --- lookups --------------------------------------------------------------

    async def find_by_task_id(self, task_id: str) -> JobState | None:
        if "\x00" in task_id:
            # Callback bodies are untrusted; no stored task id can contain NUL.
            return None
        return await self._one_state("by_task", task_id)

    async def find_by_idempotency_key(self, user_id: str, key: str) -> JobState | None:
        return await self._one_state("by_key", user_id, key)

    async def find_channel_holder(self, user_id: str, channel_id: str) -> JobState | None:
        return await self._one_state("holder", user_id, channel_id)

    async def list_jobs(self, user_id: str, channel_id: str, limit: int = 20) -> list[JobState]:
        async with self._connection() as conn:
            rows = await conn.fetch(self._sql["list"], user_id, channel_id, max(0, limit))
        return [decode_state(r["state"]) for r in rows]

    # --- the fleet ------------------------------------------------------------

    async def find_jobs(
        self, where: JobFilter, *, after: PageKey | None = None, limit: int = 50
    ) -> list[JobState]:
        sql, params = find_sql(self._quoted, where, after, limit)
        async with self._connection() as conn:
            rows = await conn.fetch(sql, *params)
        return [decode_state(r["state"]) for r in rows]

    async def count_jobs(self, where: JobFilter) -> dict[Stage, int]:
        sql, params = count_sql(self._quoted, where)
        async with self._connection() as conn:
            rows = await conn.fetch(sql, *params)
        return {Stage(r["stage"]): int(r["n"]) for r in rows}

    def changes(self) -> ChangeFeed:
        # Remote commits arrive through the LISTEN connection into the same notifier.
        if self._closed:
            raise StoreUnavailable("the PostgreSQL store is closed")
        return self._changes.feed()

    # --- leases ---------------------------------------------------------------

    async def claim(
        self, work: Work, now: datetime, *, owner: str, limit: int, lease_s: float
    ) -> list[JobState]:
        if limit <= 0:
            return []
        until = now + timedelta(seconds=lease_s)
        async with self._connection() as conn:
            rows = await conn.fetch(self._claim_sql[work], now, work.value, limit, owner, until)
        return [decode_state(r["state"]) for r in rows]

    async def queue(self, work: Work, now: datetime, limit: int) -> list[Due]:
        if limit <= 0:
            return []
        async with self._connection() as conn:
            rows = await conn.fetch(self._queue_sql[work], now, work.value, limit)
        return [Due(r["job_id"], r["user_id"], r["at"]) for r in rows]

    async def renew(
        self, job_id: str, work: Work, now: datetime, *, owner: str, lease_s: float
    ) -> bool:
        until = now + timedelta(seconds=lease_s)
        async with self._connection() as conn:
            status = await conn.execute(self._sql["renew"], job_id, work.value, owner, now, until)
        return _rowcount(status) == 1

    async def release(self, job_id: str, work: Work, *, owner: str) -> None:
        async with self._connection() as conn:
            await conn.execute(self._sql["release"], job_id, work.value, owner)

    async def release_owner(self, owner: str) -> int:
        async with self._connection() as conn:
            return _rowcount(await conn.execute(self._sql["release_owner"], owner))

    async def leases(self, owner: str | None = None) -> list[Lease]:
        async with self._connection() as conn:
            rows = await conn.fetch(self._sql["leases"], owner)
        return [Lease(r["job_id"], Work(r["work"]), r["owner"], r["until"]) for r in rows]

    # --- workers --------------------------------------------------------------

    async def register_worker(self, worker: WorkerInfo) -> None:
        async with self._connection() as conn:
            await conn.execute(
                self._sql["register"],
                worker.worker_id,
                worker.host,
                worker.pid,
                worker.started_at,
                worker.heartbeat_at,
            )

    async def heartbeat(self, worker_id: str, now: datetime) -> bool:
        async with self._connection() as conn:
            return _rowcount(await conn.execute(self._sql["heartbeat"], worker_id, now)) == 1

    async def workers(self) -> list[WorkerInfo]:
        async with self._connection() as conn:
            rows = await conn.fetch(self._sql["workers"])
        return [
            WorkerInfo(r["worker_id"], r["host"], r["pid"], r["started_at"], r["heartbeat_at"])
            for r in rows
        ]

    async def reap_worker(self, worker_id: str) -> int:
        async with self._connection() as conn, conn.transaction():
            await conn.execute(self._sql["forget_worker"], worker_id)
            return _rowcount(await conn.execute(self._sql["release_owner"], worker_id))

    # --- change feed, secrets, orphans ----------------------------------------

    async def wait_for_change(self, job_id: str, version: int, timeout: float) -> bool:
        async def current() -> int | None:
            async with self._connection() as conn:
                value: int | None = await conn.fetchval(self._sql["version"], job_id)
            return value

        return await self._changes.wait(job_id, version, timeout, current)

    async def ensure_secret(self, name: str, candidate: str) -> str:
        async with self._connection() as conn:
            await conn.execute(self._sql["secret_insert"], name, candidate)
            # A separate statement: its snapshot sees a rival's committed insert.
            value: str = await conn.fetchval(self._sql["secret"], name)
        return value

    async def record_orphan(self, orphan: OrphanCallback) -> None:
        async with self._connection() as conn:
            await conn.execute(
                self._sql["orphan_insert"],
                orphan.received_at,
                _storable(orphan.task_id),
                orphan.payload.encode("utf-8", "surrogatepass"),
                _storable(orphan.reason),
            )

    async def list_orphans(self, limit: int = 50) -> list[OrphanCallback]:
        async with self._connection() as conn:
            rows = await conn.fetch(self._sql["orphans"], max(0, limit))
        return [
            OrphanCallback(
                r["received_at"],
                r["task_id"],
                bytes(r["payload"]).decode("utf-8", "surrogatepass"),
                r["reason"],
            )
            for r in rows
        ]

    async def count_active(self, user_id: str | None = None) -> int:
        async with self._connection() as conn:
            if user_id is None:
                count: int = await conn.fetchval(self._sql["active"])
            else:
                count = await conn.fetchval(self._sql["active_by_user"], user_id)
        return count

    async def count_created(self, user_id: str, since: datetime) -> int:
        async with self._connection() as conn:
            count: int = await conn.fetchval(self._sql["created"], user_id, since)
        return count

    async def ping(self) -> None:
        async with self._connection() as conn:
            await conn.fetchval("SELECT 1")
