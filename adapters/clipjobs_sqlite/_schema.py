"""The schema, as forward migrations run at start-up, and the refusal of newer databases.

Each migration is a tuple of statements applied in one transaction together
with its row in ``clipjobs_schema``; a database stamped with a version this
code does not know was written by a newer clipjobs and is refused rather than
guessed at. Timestamps are ISO 8601 UTC text with microseconds and a fixed
width, so text order is time order and the indexes can range-scan them.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from clipjobs.domain.errors import StoreCorrupt

__all__ = ["LATEST", "MIGRATIONS", "migrate", "ts"]

_V1 = (
    """
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY,
        job_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        type TEXT NOT NULL,
        payload TEXT NOT NULL,
        recorded_at TEXT NOT NULL,
        UNIQUE (job_id, version)
    )
    """,
    """
    CREATE TABLE jobs (
        job_id TEXT PRIMARY KEY,
        version INTEGER NOT NULL,
        state TEXT NOT NULL,
        stage TEXT NOT NULL,
        done INTEGER NOT NULL,
        channel_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        task_id TEXT,
        idempotency_key TEXT,
        channel_lock TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        work TEXT,
        due_at TEXT,
        deadline_at TEXT
    )
    """,
    "CREATE INDEX jobs_task_id ON jobs (task_id) WHERE task_id IS NOT NULL",
    "CREATE UNIQUE INDEX jobs_channel_lock ON jobs (channel_lock) WHERE channel_lock IS NOT NULL",
    """
    CREATE UNIQUE INDEX jobs_idempotency ON jobs (user_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL
    """,
    "CREATE INDEX jobs_by_channel ON jobs (user_id, channel_id, created_at, job_id)",
    # What the workers scan: only unfinished jobs have work or a deadline.
    "CREATE INDEX jobs_due ON jobs (work, due_at, job_id) WHERE work IS NOT NULL",
    # deadline_at is NULL once a job is done, so this indexes exactly the undone jobs.
    "CREATE INDEX jobs_deadline ON jobs (deadline_at, job_id) WHERE deadline_at IS NOT NULL",
    "CREATE INDEX jobs_active ON jobs (done) WHERE done = 0",
    """
    CREATE TABLE leases (
        job_id TEXT NOT NULL,
        work TEXT NOT NULL,
        owner TEXT NOT NULL,
        until TEXT NOT NULL,
        PRIMARY KEY (job_id, work)
    ) WITHOUT ROWID
    """,
    "CREATE INDEX leases_owner ON leases (owner)",
    """
    CREATE TABLE secrets (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE orphan_callbacks (
        id INTEGER PRIMARY KEY,
        received_at TEXT NOT NULL,
        task_id TEXT,
        payload TEXT NOT NULL,
        reason TEXT NOT NULL
    )
    """,
)

_V2 = (
    # Worker processes announce themselves; a lease of one that died is freed early.
    """
    CREATE TABLE workers (
        worker_id TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        started_at TEXT NOT NULL,
        heartbeat_at TEXT NOT NULL
    ) WITHOUT ROWID
    """,
    # The fair queue's memory: the number of the last hand-out of a user's job, per work.
    """
    CREATE TABLE turns (
        work TEXT NOT NULL,
        user_id TEXT NOT NULL,
        served INTEGER NOT NULL,
        PRIMARY KEY (work, user_id)
    ) WITHOUT ROWID
    """,
    # Per-user caps: active jobs, and jobs started in the last hour.
    "CREATE INDEX jobs_active_by_user ON jobs (user_id) WHERE done = 0",
    "CREATE INDEX jobs_created_by_user ON jobs (user_id, created_at)",
)

_V3 = (
    # The pruner (SPEC 10.4) takes finished jobs oldest first. (Media work, kept
    # after a job is done too, is under jobs_due already: it indexes any work.)
    "CREATE INDEX jobs_finished ON jobs (updated_at, job_id) WHERE done = 1",
)

_V4 = (
    # Outgoing webhooks (SPEC 10.5): ``events`` is ",job.failed,job.succeeded,"
    # so one instr() finds a type. Deliveries are the outbox, filled by append.
    """
    CREATE TABLE notify_subscriptions (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        url TEXT NOT NULL,
        events TEXT NOT NULL,
        secret TEXT NOT NULL,
        created_at TEXT NOT NULL
    ) WITHOUT ROWID
    """,
    "CREATE INDEX notify_subscriptions_user ON notify_subscriptions (user_id, created_at)",
    """
    CREATE TABLE notify_deliveries (
        subscription_id TEXT NOT NULL,
        job_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        type TEXT NOT NULL,
        user_id TEXT NOT NULL,
        event_at TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        next_at TEXT,
        lease_owner TEXT,
        lease_until TEXT,
        PRIMARY KEY (subscription_id, job_id, version)
    ) WITHOUT ROWID
    """,
    "CREATE INDEX notify_deliveries_due ON notify_deliveries (next_at) WHERE status = 'pending'",
    """
    CREATE TABLE notify_attempts (
        id INTEGER PRIMARY KEY,
        subscription_id TEXT NOT NULL,
        job_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        type TEXT NOT NULL,
        number INTEGER NOT NULL,
        at TEXT NOT NULL,
        status_code INTEGER,
        duration_ms REAL NOT NULL,
        error TEXT,
        next_at TEXT
    )
    """,
    "CREATE INDEX notify_attempts_subscription ON notify_attempts (subscription_id, at)",
    "CREATE INDEX notify_attempts_job ON notify_attempts (job_id, at)",
)

_V5 = (
    # The fleet list (SPEC 10.3): newest first, alone or by one of the filters;
    # each ends in (created_at, job_id) so a cursor page is one range scan.
    "CREATE INDEX jobs_newest ON jobs (created_at, job_id)",
    "CREATE INDEX jobs_user_newest ON jobs (user_id, created_at, job_id)",
    "CREATE INDEX jobs_stage_newest ON jobs (stage, created_at, job_id)",
    "CREATE INDEX jobs_channel_newest ON jobs (channel_id, created_at, job_id)",
    # Stale jobs: undone, quiet since before a time.
    "CREATE INDEX jobs_quiet ON jobs (updated_at) WHERE done = 0",
)

#: ``(version, statements)`` in order; append, never edit a released one.
MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (1, _V1),
    (2, _V2),
    (3, _V3),
    (4, _V4),
    (5, _V5),
)
LATEST = MIGRATIONS[-1][0]


def ts(value: datetime) -> str:
    """Fixed-width ISO 8601 UTC with microseconds: sorts as text in time order."""
    # isoformat pads the year to four digits and, with timespec, always
    # writes the microseconds; it is several times cheaper than strftime.
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def migrate(conn: sqlite3.Connection, path: str, *, latest: int = LATEST) -> int:
    """Bring the database up to ``latest`` in one transaction; the version it was at.

    Runs on the writer's thread with the connection in autocommit mode.
    ``latest`` is a parameter only so tests can play an older clipjobs.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS clipjobs_schema ("
            " version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
        )
        row = conn.execute("SELECT max(version) FROM clipjobs_schema").fetchone()
        found = int(row[0] or 0)
        if found > latest:
            raise StoreCorrupt(
                f"{path} was written by a newer clipjobs (schema version {found}; this one"
                f" knows up to {latest}): upgrade clipjobs or point CLIPJOBS_DB elsewhere"
            )
        # A file SQLite could only open read-only still answers BEGIN IMMEDIATE;
        # a write, even of no rows, says so now rather than at the first append.
        conn.execute("UPDATE clipjobs_schema SET applied_at = applied_at WHERE 0")
        now = ts(datetime.now(UTC))
        for version, statements in MIGRATIONS:
            if found < version <= latest:
                for statement in statements:
                    try:
                        conn.execute(statement)
                    except sqlite3.OperationalError as exc:
                        if "already exists" not in str(exc):
                            raise
                        raise StoreCorrupt(
                            f"{path} holds tables clipjobs did not create ({exc}):"
                            " point CLIPJOBS_DB at a file of its own"
                        ) from exc
                conn.execute(
                    "INSERT INTO clipjobs_schema (version, applied_at) VALUES (?, ?)",
                    (version, now),
                )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return found
