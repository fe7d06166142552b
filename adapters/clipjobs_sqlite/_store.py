"""``SQLiteEventStore``: job logs, projection rows, leases and the change feed in one SQLite file.

How it keeps its promises:

- every write goes through one :class:`~._writer.GroupWriter`: concurrent
  appends share one transaction and one fsync, each in its own savepoint,
  and every caller is answered after the COMMIT (``synchronous=FULL`` in WAL
  mode, so an append that returned survives a power cut);
- an append updates the projection row only if it is still at the expected
  version, in the same savepoint as the events; ``UNIQUE`` indexes decide
  between new jobs racing for a channel lock or an idempotency key;
- reads use a second connection (WAL readers never wait for the writer) and
  ``load`` is one primary-key look-up of the projection row, made on the
  event loop itself through a third, plain ``sqlite3`` connection: a point
  read from the page cache costs a few microseconds, far less than the trip
  to the connection's thread and back (GET job, ``bench/bench_http.py``'s load, old and
  new code paired: about 5,800 to 8,300 requests/s). It never waits for a lock (``timeout=0``):
  any failure there falls back to the threaded read, which waits and reports
  errors as every other read does;
- waiters are woken by :class:`~clipjobs.app.changes.ChangeNotifier` after the
  COMMIT. Only this process's commits wake them: SQLite has no cross-process
  notification (see ``docs/storage.md``).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, Literal, Self

from clipjobs.app.changes import ChangeFeed, ChangeNotifier
from clipjobs.app.ports import Commit, Due, Lease, OrphanCallback, RecordedEvent, WorkerInfo
from clipjobs.domain.codec import decode_event, decode_state, encode_event, encode_state, parse_ts
from clipjobs.domain.errors import (
    ChannelBusy,
    ConcurrencyError,
    ConfigError,
    IdempotencyConflict,
    InvalidRequest,
    StoreUnavailable,
)
from clipjobs.domain.fleet import JobFilter, PageKey
from clipjobs.domain.stages import Stage, Work
from clipjobs.domain.state import JobState

from ._aio import Connection, connect, on_thread
from ._errors import edge
from ._fleet import count_sql, find_sql
from ._notify import SQLiteNotify, enqueue
from ._retention import SQLiteRetention
from ._schema import migrate, ts
from ._url import MEMORY, parse_sqlite_url
from ._writer import GroupWriter

__all__ = ["SQLiteEventStore", "Synchronous"]

Synchronous = Literal["FULL", "NORMAL"]

_JOB_COLUMNS = (
    "job_id, version, state, stage, done, channel_id, user_id, task_id, idempotency_key,"
    " channel_lock, created_at, updated_at, work, due_at, deadline_at"
)
_INSERT_JOB = (
    f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"  # noqa: S608 - constant column list
)
_UPDATE_JOB = (
    "UPDATE jobs SET version = ?, state = ?, stage = ?, done = ?, channel_id = ?, user_id = ?,"
    " task_id = ?, idempotency_key = ?, channel_lock = ?, created_at = ?, updated_at = ?,"
    " work = ?, due_at = ?, deadline_at = ? WHERE job_id = ? AND version = ?"
)
_WHY_NOT_INSERTED = """
    SELECT 1, job_id FROM jobs WHERE job_id = ?
    UNION ALL SELECT 2, job_id FROM jobs WHERE channel_lock = ?
    UNION ALL SELECT 3, job_id FROM jobs WHERE user_id = ? AND idempotency_key = ?
    ORDER BY 1 LIMIT 1
"""
_INSERT_EVENT = (
    "INSERT INTO events (job_id, version, type, payload, recorded_at) VALUES (?, ?, ?, ?, ?)"
)
# Waiting jobs in the fair order (clipjobs.fair_order): a user's k-th oldest
# waiting job goes in round k; within a round, users served longest ago first
# (never served: first of all), then the user with the older oldest job.
_FAIR_DUE = """
    WITH due AS (
        SELECT j.job_id, j.state, j.user_id, j.due_at,
               row_number() OVER mine AS turn,
               first_value(j.due_at) OVER mine AS head_at,
               first_value(j.job_id) OVER mine AS head_id
        FROM jobs AS j
        WHERE j.work = ? AND j.due_at <= ?
          AND NOT EXISTS (
            SELECT 1 FROM leases AS l WHERE l.job_id = j.job_id AND l.work = ? AND l.until > ?)
        WINDOW mine AS (PARTITION BY j.user_id ORDER BY j.due_at, j.job_id)
    )
    SELECT due.job_id, due.state, due.user_id, due.due_at FROM due
    LEFT JOIN turns AS t ON t.work = ? AND t.user_id = due.user_id
    ORDER BY due.turn, coalesce(t.served, 0), due.head_at, due.head_id, due.due_at, due.job_id
    LIMIT ?
"""
_CLAIM_DUE = """
    SELECT j.job_id, j.state, j.user_id, j.due_at FROM jobs AS j
    WHERE j.work = ? AND j.due_at <= ?
      AND NOT EXISTS (
        SELECT 1 FROM leases AS l WHERE l.job_id = j.job_id AND l.work = ? AND l.until > ?)
    ORDER BY j.due_at, j.job_id LIMIT ?
"""
# JobState.deadline_at is None once a job is done: "has a deadline" means "undone".
_CLAIM_OVERDUE = """
    SELECT j.job_id, j.state, j.user_id, j.deadline_at FROM jobs AS j
    WHERE j.deadline_at IS NOT NULL AND j.deadline_at <= ?
      AND NOT EXISTS (
        SELECT 1 FROM leases AS l WHERE l.job_id = j.job_id AND l.work = ? AND l.until > ?)
    ORDER BY j.deadline_at, j.job_id LIMIT ?
"""
_TAKE_LEASE = """
    INSERT INTO leases (job_id, work, owner, until) VALUES (?, ?, ?, ?)
    ON CONFLICT (job_id, work) DO UPDATE SET owner = excluded.owner, until = excluded.until
"""
_TAKE_TURN = """
    INSERT INTO turns (work, user_id, served)
    VALUES (?1, ?2, (SELECT coalesce(max(served), 0) + 1 FROM turns WHERE work = ?1))
    ON CONFLICT (work, user_id) DO UPDATE SET served = excluded.served
"""
#: Work handed out in the fair order (round-robin by user); the rest oldest first.
_FAIR = frozenset({Work.SEND, Work.POLL})

_LOAD = "SELECT state FROM jobs WHERE job_id = ?"

_Row = tuple[Any, ...]


def _job_row(state: JobState) -> _Row:
    work, due, deadline = state.work, state.due_at, state.deadline_at
    return (
        state.job_id,
        state.version,
        encode_state(state),
        state.stage.value,
        int(state.done),
        state.channel_id,
        state.user_id,
        state.task_id,
        state.idempotency_key,
        state.channel_lock,
        ts(state.created_at),
        ts(state.updated_at),
        work.value if work is not None else None,
        ts(due) if due is not None else None,
        ts(deadline) if deadline is not None else None,
    )


def _append(commit: Commit, job: _Row, events: list[_Row]) -> Callable[[sqlite3.Connection], None]:
    """The append as the writer runs it, inside its own savepoint."""
    job_id, expected = commit.job_id, commit.expected_version

    def run(conn: sqlite3.Connection) -> None:
        if expected == 0:
            try:
                conn.execute(_INSERT_JOB, job)
            except sqlite3.IntegrityError:
                why = conn.execute(_WHY_NOT_INSERTED, (job_id, job[9], job[6], job[8])).fetchone()
                if why is None:
                    raise
                if why[0] == 2:
                    raise ChannelBusy(why[1]) from None
                if why[0] == 3:
                    raise IdempotencyConflict(why[1]) from None
                raise ConcurrencyError(f"job {job_id} already exists") from None
        else:
            try:
                updated = conn.execute(_UPDATE_JOB, (*job[1:], job_id, expected)).rowcount
            except sqlite3.IntegrityError:
                # Only the channel lock can collide on an update.
                holder = conn.execute(
                    "SELECT job_id FROM jobs WHERE channel_lock = ? AND job_id <> ?",
                    (job[9], job_id),
                ).fetchone()
                if holder is None:
                    raise
                raise ChannelBusy(holder[0]) from None
            if updated != 1:
                raise ConcurrencyError(f"job {job_id} is not at version {expected} any more")
        conn.executemany(_INSERT_EVENT, events)
        enqueue(conn, commit)  # the webhook outbox, in the same transaction

    return run


def _due_query(work: Work, at: str, limit: int) -> tuple[str, tuple[Any, ...]]:
    """The SQL that lists ``work``'s due jobs in claim order: rows of (id, state, user, due)."""
    if work is Work.SWEEP:
        return _CLAIM_OVERDUE, (at, work.value, at, limit)
    if work in _FAIR:
        return _FAIR_DUE, (work.value, at, work.value, at, work.value, limit)
    return _CLAIM_DUE, (work.value, at, work.value, at, limit)


class SQLiteEventStore(SQLiteRetention, SQLiteNotify):
    """The ``EventStore`` in one SQLite file (or ``":memory:"``).

    ``await SQLiteEventStore.open(path)`` or ``async with SQLiteEventStore(path)``.
    ``synchronous="FULL"`` (the default) makes every returned append survive
    a power loss; ``"NORMAL"`` only a crash of the process (see docs/storage.md).
    ``busy_timeout`` is how long to wait for another process's lock before
    raising ``StoreUnavailable``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "FULL",
        busy_timeout: float = 5.0,
        max_group: int = 512,
    ) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ConfigError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
        if max_group < 1:
            raise ConfigError("max_group must be at least 1")
        self._path = os.fspath(path)
        self._memory = self._path == MEMORY
        self._synchronous = synchronous
        self._busy_timeout = busy_timeout
        self._max_group = max_group
        self._wdb: Connection | None = None
        self._rdb: Connection | None = None
        #: ``load``'s connection, used on the event loop's thread only (None in memory).
        self._ldb: sqlite3.Connection | None = None
        self._writer: GroupWriter | None = None
        self._changes = ChangeNotifier()
        self._closed = False

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "FULL",
        busy_timeout: float = 5.0,
        max_group: int = 512,
    ) -> Self:
        """Open (creating and migrating if need be) the database at ``path``."""
        store = cls(path, synchronous=synchronous, busy_timeout=busy_timeout, max_group=max_group)
        await store._start()
        return store

    @classmethod
    async def open_url(cls, url: str, **options: Any) -> Self:
        """Open the database a ``sqlite:///…`` URL names (``CLIPJOBS_DB``)."""
        return await cls.open(parse_sqlite_url(url), **options)

    @property
    def path(self) -> str:
        return self._path

    async def __aenter__(self) -> Self:
        await self._start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _start(self) -> None:
        if self._closed:
            raise StoreUnavailable(f"the store for {self._path} is closed")
        if self._writer is not None:
            return
        try:
            with edge(self._path):
                self._wdb = await self._connect()
                await on_thread(self._wdb, self._prepare)
                if self._memory:
                    # A second connection would open a different, empty database.
                    self._rdb = self._wdb
                else:
                    self._rdb = await self._connect()
                    await self._rdb.execute("PRAGMA query_only = ON")
                    self._ldb = self._loop_reader()
        except BaseException:
            await self._close_connections()
            raise
        self._writer = GroupWriter(
            self._wdb, self._path, max_group=self._max_group, committed=self._notify
        )
        self._writer.start()

    async def _connect(self) -> Connection:
        # isolation_level=None: sqlite3 must not open transactions behind our back;
        # the writer issues BEGIN IMMEDIATE itself.
        return await connect(self._path, isolation_level=None, timeout=self._busy_timeout)

    def _loop_reader(self) -> sqlite3.Connection | None:
        """The connection ``load`` reads through on the loop; None if it cannot be had."""
        try:
            conn = sqlite3.connect(
                self._path, isolation_level=None, timeout=0, check_same_thread=False
            )
        except sqlite3.Error:
            return None  # load keeps using the threaded reader
        try:
            conn.execute("PRAGMA query_only = ON")
        except sqlite3.Error:
            conn.close()
            return None
        return conn

    def _prepare(self, conn: sqlite3.Connection) -> None:
        mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
        if not self._memory and mode != "wal":
            raise StoreUnavailable(
                f"the database {self._path} cannot use write-ahead logging (journal_mode={mode})"
            )
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        migrate(conn, self._path)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._writer is not None:
                await self._writer.stop()
        finally:
            await self._close_connections()
            self._changes.notify_all()

    async def _close_connections(self) -> None:
        ldb, self._ldb = self._ldb, None
        if ldb is not None:
            with contextlib.suppress(sqlite3.Error):
                ldb.close()
        for db in {id(c): c for c in (self._rdb, self._wdb) if c is not None}.values():
            # Closing is best effort: the file is consistent after every COMMIT.
            with contextlib.suppress(sqlite3.Error, ValueError):
                await db.close()
        self._rdb = self._wdb = None

    def _notify(self, job_ids: Iterable[str]) -> None:
        for job_id in job_ids:
            self._changes.notify(job_id)

    def _write(self) -> GroupWriter:
        if self._closed or self._writer is None:
            raise StoreUnavailable(f"the store for {self._path} is closed or not opened")
        return self._writer

    async def _fetch(self, sql: str, params: tuple[Any, ...]) -> list[sqlite3.Row]:
        db = self._rdb
        if self._closed or db is None:
            raise StoreUnavailable(f"the store for {self._path} is closed or not opened")
        with edge(self._path):
            return list(await db.execute_fetchall(sql, params))

    # --- EventStore ----------------------------------------------------------

    async def append(self, commit: Commit) -> None:
        writer = self._write()
        if not commit.events:
            raise InvalidRequest("a commit needs at least one event")
        state, expected = commit.state, commit.expected_version
        if state.version != expected + len(commit.events) or state.job_id != commit.job_id:
            raise InvalidRequest("the commit's state does not follow from its events")
        events: list[_Row] = []
        for version, event in enumerate(commit.events, start=expected + 1):
            type_, payload = encode_event(event)
            events.append((commit.job_id, version, type_, payload, ts(event.at)))
        with edge(self._path):
            await writer.submit(_append(commit, _job_row(state), events), commit.job_id)

    async def load(self, job_id: str) -> JobState | None:
        ldb = self._ldb
        if ldb is not None and not self._closed:
            try:
                # fetchall, not fetchone: the statement ends, so no read snapshot stays open.
                found = ldb.execute(_LOAD, (job_id,)).fetchall()
            except sqlite3.Error:
                pass  # busy, or worse: the threaded read below waits, or says what is wrong
            else:
                return decode_state(found[0][0]) if found else None
        rows = await self._fetch(_LOAD, (job_id,))
        return decode_state(rows[0][0]) if rows else None

    async def read(self, job_id: str, after_version: int = 0) -> list[RecordedEvent]:
        rows = await self._fetch(
            "SELECT version, type, payload FROM events"
            " WHERE job_id = ? AND version > ? ORDER BY version",
            (job_id, after_version),
        )
        return [RecordedEvent(job_id, v, decode_event(t, p)) for v, t, p in rows]

    async def find_by_task_id(self, task_id: str) -> JobState | None:
        rows = await self._fetch(
            "SELECT state FROM jobs WHERE task_id = ? ORDER BY rowid LIMIT 1", (task_id,)
        )
        return decode_state(rows[0][0]) if rows else None

    async def find_by_idempotency_key(self, user_id: str, key: str) -> JobState | None:
        rows = await self._fetch(
            "SELECT state FROM jobs WHERE user_id = ? AND idempotency_key = ?", (user_id, key)
        )
        return decode_state(rows[0][0]) if rows else None

    async def find_channel_holder(self, user_id: str, channel_id: str) -> JobState | None:
        lock = f"{user_id}\x1f{channel_id}"
        rows = await self._fetch("SELECT state FROM jobs WHERE channel_lock = ?", (lock,))
        return decode_state(rows[0][0]) if rows else None

    async def list_jobs(self, user_id: str, channel_id: str, limit: int = 20) -> list[JobState]:
        rows = await self._fetch(
            "SELECT state FROM jobs WHERE user_id = ? AND channel_id = ?"
            " ORDER BY created_at DESC, job_id DESC LIMIT ?",
            (user_id, channel_id, max(0, limit)),
        )
        return [decode_state(r[0]) for r in rows]

    async def find_jobs(
        self, where: JobFilter, *, after: PageKey | None = None, limit: int = 50
    ) -> list[JobState]:
        rows = await self._fetch(*find_sql(where, after, limit))
        return [decode_state(r[0]) for r in rows]

    async def count_jobs(self, where: JobFilter) -> dict[Stage, int]:
        rows = await self._fetch(*count_sql(where))
        return {Stage(r[0]): int(r[1]) for r in rows}

    def changes(self) -> ChangeFeed:
        # Only this process's commits: SQLite tells no other process (docs/storage.md).
        self._write()
        return self._changes.feed()

    async def claim(
        self, work: Work, now: datetime, *, owner: str, limit: int, lease_s: float
    ) -> list[JobState]:
        writer = self._write()
        if limit <= 0:
            return []
        query, params = _due_query(work, ts(now), limit)
        until = ts(now + timedelta(seconds=lease_s))

        def run(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(query, params).fetchall()
            conn.executemany(_TAKE_LEASE, [(r[0], work.value, owner, until) for r in rows])
            if work in _FAIR:
                conn.executemany(_TAKE_TURN, [(work.value, r[2]) for r in rows])
            return [r[1] for r in rows]

        with edge(self._path):
            documents = await writer.submit(run)
        return [decode_state(d) for d in documents]

    async def queue(self, work: Work, now: datetime, limit: int) -> list[Due]:
        if limit <= 0:
            return []
        rows = await self._fetch(*_due_query(work, ts(now), limit))
        return [Due(r[0], r[2], parse_ts(r[3])) for r in rows]

    async def renew(
        self, job_id: str, work: Work, now: datetime, *, owner: str, lease_s: float
    ) -> bool:
        writer = self._write()
        params = (ts(now + timedelta(seconds=lease_s)), job_id, work.value, owner, ts(now))

        def run(conn: sqlite3.Connection) -> bool:
            return (
                conn.execute(
                    "UPDATE leases SET until = ?"
                    " WHERE job_id = ? AND work = ? AND owner = ? AND until > ?",
                    params,
                ).rowcount
                == 1
            )

        with edge(self._path):
            return await writer.submit(run)

    async def release(self, job_id: str, work: Work, *, owner: str) -> None:
        writer = self._write()
        params = (job_id, work.value, owner)

        def run(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM leases WHERE job_id = ? AND work = ? AND owner = ?", params)

        with edge(self._path):
            await writer.submit(run)

    async def release_owner(self, owner: str) -> int:
        writer = self._write()

        def run(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM leases WHERE owner = ?", (owner,)).rowcount

        with edge(self._path):
            return await writer.submit(run)

    async def leases(self, owner: str | None = None) -> list[Lease]:
        rows = await self._fetch(
            "SELECT job_id, work, owner, until FROM leases WHERE ? IS NULL OR owner = ?"
            " ORDER BY owner, job_id, work",
            (owner, owner),
        )
        return [Lease(r[0], Work(r[1]), r[2], parse_ts(r[3])) for r in rows]

    async def register_worker(self, worker: WorkerInfo) -> None:
        writer = self._write()
        params = (
            worker.worker_id,
            worker.host,
            worker.pid,
            ts(worker.started_at),
            ts(worker.heartbeat_at),
        )

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO workers (worker_id, host, pid, started_at, heartbeat_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (worker_id) DO UPDATE SET"
                " host = excluded.host,"
                " pid = excluded.pid, started_at = excluded.started_at,"
                " heartbeat_at = excluded.heartbeat_at",
                params,
            )

        with edge(self._path):
            await writer.submit(run)

    async def heartbeat(self, worker_id: str, now: datetime) -> bool:
        writer = self._write()
        params = (ts(now), worker_id)

        def run(conn: sqlite3.Connection) -> bool:
            sql = "UPDATE workers SET heartbeat_at = ? WHERE worker_id = ?"
            return conn.execute(sql, params).rowcount == 1

        with edge(self._path):
            return await writer.submit(run)

    async def workers(self) -> list[WorkerInfo]:
        rows = await self._fetch(
            "SELECT worker_id, host, pid, started_at, heartbeat_at FROM workers"
            " ORDER BY started_at, worker_id",
            (),
        )
        return [WorkerInfo(r[0], r[1], int(r[2]), parse_ts(r[3]), parse_ts(r[4])) for r in rows]

    async def reap_worker(self, worker_id: str) -> int:
        writer = self._write()

        def run(conn: sqlite3.Connection) -> int:
            conn.execute("DELETE FROM workers WHERE worker_id = ?", (worker_id,))
            return conn.execute("DELETE FROM leases WHERE owner = ?", (worker_id,)).rowcount

        with edge(self._path):
            return await writer.submit(run)

    async def wait_for_change(self, job_id: str, version: int, timeout: float) -> bool:
        self._write()

        async def current() -> int | None:
            rows = await self._fetch("SELECT version FROM jobs WHERE job_id = ?", (job_id,))
            return int(rows[0][0]) if rows else None

        return await self._changes.wait(job_id, version, timeout, current)

    async def ensure_secret(self, name: str, candidate: str) -> str:
        writer = self._write()

        def run(conn: sqlite3.Connection) -> str:
            conn.execute(
                "INSERT INTO secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                (name, candidate),
            )
            return str(
                conn.execute("SELECT value FROM secrets WHERE name = ?", (name,)).fetchone()[0]
            )

        with edge(self._path):
            return await writer.submit(run)

    async def record_orphan(self, orphan: OrphanCallback) -> None:
        writer = self._write()
        params = (ts(orphan.received_at), orphan.task_id, orphan.payload, orphan.reason)

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO orphan_callbacks (received_at, task_id, payload, reason)"
                " VALUES (?, ?, ?, ?)",
                params,
            )

        with edge(self._path):
            await writer.submit(run)

    async def list_orphans(self, limit: int = 50) -> list[OrphanCallback]:
        rows = await self._fetch(
            "SELECT received_at, task_id, payload, reason FROM orphan_callbacks"
            " ORDER BY id DESC LIMIT ?",
            (max(0, limit),),
        )
        return [OrphanCallback(parse_ts(r[0]), r[1], r[2], r[3]) for r in rows]

    async def count_active(self, user_id: str | None = None) -> int:
        if user_id is None:
            rows = await self._fetch("SELECT count(*) FROM jobs WHERE done = 0", ())
        else:
            sql = "SELECT count(*) FROM jobs WHERE done = 0 AND user_id = ?"
            rows = await self._fetch(sql, (user_id,))
        return int(rows[0][0])

    async def count_created(self, user_id: str, since: datetime) -> int:
        rows = await self._fetch(
            "SELECT count(*) FROM jobs WHERE user_id = ? AND created_at >= ?", (user_id, ts(since))
        )
        return int(rows[0][0])

    async def ping(self) -> None:
        self._write()
        await self._fetch("SELECT 1", ())
