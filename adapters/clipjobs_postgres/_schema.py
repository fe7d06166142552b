"""The tables, their forward migrations, and the start-up that applies them once.

Every statement names its schema explicitly (no ``search_path``), so one
database can hold several clipjobs schemas (tests use one per test).
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING

import asyncpg

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

from clipjobs.errors import ConfigError, StoreCorrupt

__all__ = ["LATEST_VERSION", "MIGRATIONS", "check_schema_name", "migrate", "render"]

# Lower-case only, so the unquoted LISTEN channel and pg_notify() agree, and
# short enough that "<schema>_changes" fits PostgreSQL's 63-byte identifiers.
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,47}")

#: Forward migrations by the version they lead to; ``{s}`` is the quoted schema.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        # Payloads and states are JSON kept as text: jsonb would reject the
        # \u0000 escapes that free-text fields (prompts, error messages) may hold.
        """
        CREATE TABLE {s}.events (
            job_id      text        NOT NULL,
            version     integer     NOT NULL CHECK (version > 0),
            type        text        NOT NULL,
            payload     text        NOT NULL,
            recorded_at timestamptz NOT NULL,
            CONSTRAINT events_pkey PRIMARY KEY (job_id, version)
        )
        """,
        """
        CREATE TABLE {s}.jobs (
            job_id          text        NOT NULL CONSTRAINT jobs_pkey PRIMARY KEY,
            version         integer     NOT NULL,
            stage           text        NOT NULL,
            done            boolean     NOT NULL,
            channel_id      text        NOT NULL,
            user_id         text        NOT NULL,
            task_id         text,
            idempotency_key text,
            channel_lock    text,
            created_at      timestamptz NOT NULL,
            updated_at      timestamptz NOT NULL,
            work            text,
            due_at          timestamptz,
            deadline_at     timestamptz,
            state           text        NOT NULL
        )
        """,
        "CREATE UNIQUE INDEX jobs_channel_lock ON {s}.jobs (channel_lock)"
        " WHERE channel_lock IS NOT NULL",
        "CREATE UNIQUE INDEX jobs_idempotency ON {s}.jobs (user_id, idempotency_key)"
        " WHERE idempotency_key IS NOT NULL",
        "CREATE INDEX jobs_task ON {s}.jobs (task_id) WHERE task_id IS NOT NULL",
        "CREATE INDEX jobs_channel ON {s}.jobs (user_id, channel_id, created_at)",
        "CREATE INDEX jobs_due ON {s}.jobs (work, due_at) WHERE NOT done",
        "CREATE INDEX jobs_deadline ON {s}.jobs (deadline_at) WHERE NOT done",
        """
        CREATE TABLE {s}.leases (
            job_id text        NOT NULL,
            work   text        NOT NULL,
            owner  text        NOT NULL,
            until  timestamptz NOT NULL,
            CONSTRAINT leases_pkey PRIMARY KEY (job_id, work)
        )
        """,
        "CREATE INDEX leases_owner ON {s}.leases (owner)",
        """
        CREATE TABLE {s}.secrets (
            name  text NOT NULL CONSTRAINT secrets_pkey PRIMARY KEY,
            value text NOT NULL
        )
        """,
        # The raw body is bytes: an orphan is kept whatever it contains.
        """
        CREATE TABLE {s}.orphans (
            id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            received_at timestamptz NOT NULL,
            task_id     text,
            payload     bytea       NOT NULL,
            reason      text        NOT NULL
        )
        """,
    ),
    2: (
        # Worker processes announce themselves; a lease of one that died is freed early.
        """
        CREATE TABLE {s}.workers (
            worker_id    text        NOT NULL CONSTRAINT workers_pkey PRIMARY KEY,
            host         text        NOT NULL,
            pid          integer     NOT NULL,
            started_at   timestamptz NOT NULL,
            heartbeat_at timestamptz NOT NULL
        )
        """,
        # The fair queue's memory: the number of the last hand-out of a user's job, per work.
        "CREATE SEQUENCE {s}.handouts",
        """
        CREATE TABLE {s}.turns (
            work    text   NOT NULL,
            user_id text   NOT NULL,
            served  bigint NOT NULL,
            CONSTRAINT turns_pkey PRIMARY KEY (work, user_id)
        )
        """,
        # Per-user caps: active jobs, and jobs started in the last hour.
        "CREATE INDEX jobs_active_by_user ON {s}.jobs (user_id) WHERE NOT done",
        "CREATE INDEX jobs_created_by_user ON {s}.jobs (user_id, created_at)",
    ),
}

LATEST_VERSION = max(MIGRATIONS)


def check_schema_name(schema: str) -> str:
    """The schema name, or ConfigError when it is not a plain lower-case identifier."""
    if not _SCHEMA_NAME.fullmatch(schema):
        raise ConfigError(
            f"PostgreSQL schema name {schema!r} must match {_SCHEMA_NAME.pattern} "
            "(lower-case letters, digits, underscores; at most 48 characters)"
        )
    return schema


def render(sql: str, schema: str) -> str:
    """``sql`` with ``{s}`` replaced by the quoted schema (checked by check_schema_name)."""
    return sql.replace("{s}", f'"{check_schema_name(schema)}"')


def _lock_key(schema: str) -> int:
    # A stable 64-bit advisory-lock key per schema (Python's hash() is salted).
    digest = hashlib.sha256(f"clipjobs-migrate:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def migrate(
    conn: asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record], schema: str
) -> int:
    """Bring ``schema`` up to :data:`LATEST_VERSION`; the version it is at.

    Processes starting together serialise on a transaction-scoped advisory
    lock, so the first migrates and the others find the work done. A schema
    written by a newer clipjobs is refused, never touched.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _lock_key(schema))
        await conn.execute(render("CREATE SCHEMA IF NOT EXISTS {s}", schema))
        await conn.execute(
            render(
                "CREATE TABLE IF NOT EXISTS {s}.schema_version ("
                " version integer PRIMARY KEY,"
                " applied_at timestamptz NOT NULL DEFAULT now())",
                schema,
            )
        )
        current: int = await conn.fetchval(
            render("SELECT coalesce(max(version), 0) FROM {s}.schema_version", schema)
        )
        if current > LATEST_VERSION:
            raise StoreCorrupt(
                f"PostgreSQL schema {schema!r} is at version {current}, newer than this "
                f"clipjobs understands ({LATEST_VERSION}): upgrade clipjobs"
            )
        for version in range(current + 1, LATEST_VERSION + 1):
            for statement in MIGRATIONS[version]:
                await conn.execute(render(statement, schema))
            await conn.execute(
                render("INSERT INTO {s}.schema_version (version) VALUES ($1)", schema), version
            )
    return LATEST_VERSION
