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

from clipjobs.domain.errors import ConfigError, StoreCorrupt

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
    3: (
        # The Suno budget every process of the schema shares (PostgresCallBudget):
        # one row per budget (a Suno account) holding the 430 pause and slow-down,
        # the calls it let through, and each process's first waiting call.
        """
        CREATE TABLE {s}.budget (
            name         text        NOT NULL CONSTRAINT budget_pkey PRIMARY KEY,
            paused_until timestamptz,
            level        integer     NOT NULL DEFAULT 0,
            limited_at   timestamptz,
            -- The latest start: with pacing the next is window/limit after it.
            last_started_at timestamptz
        )
        """,
        """
        CREATE TABLE {s}.budget_calls (
            id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            budget       text        NOT NULL,
            priority     smallint    NOT NULL,
            owner        text        NOT NULL,
            queued_at    timestamptz NOT NULL,
            started_at   timestamptz NOT NULL,
            answered_at  timestamptz,
            counts_until timestamptz NOT NULL
        )
        """,
        "CREATE INDEX budget_calls_counting ON {s}.budget_calls (budget, counts_until)",
        """
        CREATE TABLE {s}.budget_waiters (
            budget    text        NOT NULL,
            waiter    text        NOT NULL,
            priority  smallint    NOT NULL,
            queued_at timestamptz NOT NULL,
            seen_at   timestamptz NOT NULL,
            CONSTRAINT budget_waiters_pkey PRIMARY KEY (budget, waiter)
        )
        """,
        # How many times 430s still halve the rate: each recover period undoes one.
        """
        CREATE FUNCTION {s}.budget_slowdown(
            p_level integer, p_limited_at timestamptz, p_now timestamptz, p_recover interval
        ) RETURNS integer LANGUAGE sql IMMUTABLE AS $$
            SELECT CASE WHEN p_level = 0 OR p_limited_at IS NULL THEN 0
                ELSE greatest(0, p_level - floor(
                    extract(epoch FROM p_now - p_limited_at) / extract(epoch FROM p_recover)
                )::integer) END
        $$
        """,
        # Taking a turn, in one round trip. The budget row's lock serialises the
        # takers of every process for the length of this call. With p_register the
        # caller's first waiting call is (re)announced and the turn goes only to the
        # best live waiter (lowest priority value, then oldest, across processes);
        # without it (a credit check) only when no live waiter exists at all.
        # Returns the new call's id, or when to ask again (behind: another
        # process's waiter goes first).
        """
        CREATE FUNCTION {s}.budget_take(
            p_budget text, p_waiter text, p_register boolean, p_priority smallint,
            p_queued_at timestamptz, p_now timestamptz, p_owner text, p_limit integer,
            p_window interval, p_recover interval, p_live interval, p_pacing boolean,
            OUT call_id bigint, OUT retry_at timestamptz, OUT behind boolean
        ) LANGUAGE plpgsql AS $$
        DECLARE
            b {s}.budget%ROWTYPE;
            v_limit integer;
            v_count integer;
        BEGIN
            behind := false;
            SELECT * INTO b FROM {s}.budget WHERE name = p_budget FOR UPDATE;
            IF NOT FOUND THEN
                INSERT INTO {s}.budget (name) VALUES (p_budget) ON CONFLICT (name) DO NOTHING;
                SELECT * INTO b FROM {s}.budget WHERE name = p_budget FOR UPDATE;
            END IF;
            IF p_register THEN
                INSERT INTO {s}.budget_waiters AS w (budget, waiter, priority, queued_at, seen_at)
                VALUES (p_budget, p_waiter, p_priority, p_queued_at, p_now)
                ON CONFLICT (budget, waiter) DO UPDATE SET priority = excluded.priority,
                    queued_at = excluded.queued_at, seen_at = excluded.seen_at;
            END IF;
            IF b.paused_until > p_now THEN
                retry_at := b.paused_until;
                RETURN;
            END IF;
            behind := EXISTS (
                SELECT 1 FROM {s}.budget_waiters AS w
                WHERE w.budget = p_budget AND w.waiter <> p_waiter
                  AND w.seen_at > p_now - p_live
                  AND (NOT p_register
                       OR (w.priority, w.queued_at, w.waiter)
                          < (p_priority, p_queued_at, p_waiter)));
            v_limit := greatest(1, p_limit >> {s}.budget_slowdown(
                b.level, b.limited_at, p_now, p_recover));
            SELECT count(*) INTO v_count FROM {s}.budget_calls
            WHERE budget = p_budget AND counts_until > p_now;
            IF v_count >= v_limit THEN
                SELECT c.counts_until INTO retry_at FROM {s}.budget_calls AS c
                WHERE c.budget = p_budget AND c.counts_until > p_now
                ORDER BY c.counts_until OFFSET v_count - v_limit LIMIT 1;
                RETURN;
            END IF;
            IF p_pacing AND b.last_started_at + p_window / v_limit > p_now THEN
                retry_at := b.last_started_at + p_window / v_limit;
                RETURN;
            END IF;
            IF behind THEN
                retry_at := p_now;
                RETURN;
            END IF;
            INSERT INTO {s}.budget_calls
                (budget, priority, owner, queued_at, started_at, counts_until)
            VALUES (p_budget, p_priority, p_owner, p_queued_at, p_now, p_now + p_window)
            RETURNING id INTO call_id;
            UPDATE {s}.budget SET last_started_at = p_now WHERE name = p_budget;
            IF p_register THEN
                DELETE FROM {s}.budget_waiters WHERE budget = p_budget AND waiter = p_waiter;
            END IF;
            IF call_id % 1000 = 0 THEN
                -- Now and then: calls and waiters older than a day are of no more use.
                DELETE FROM {s}.budget_calls
                WHERE budget = p_budget AND counts_until < p_now - interval '1 day';
                DELETE FROM {s}.budget_waiters
                WHERE budget = p_budget AND seen_at < p_now - interval '1 day';
            END IF;
        END
        $$
        """,
        # A 430/405: pause every process and halve the rate, unless a pause is on
        # already (answers to calls in flight together are one burst). NULLs then.
        """
        CREATE FUNCTION {s}.budget_limited(
            p_budget text, p_now timestamptz, p_backoff interval, p_backoff_max interval,
            p_recover interval, p_max_level integer,
            OUT paused_until timestamptz, OUT level integer
        ) LANGUAGE plpgsql AS $$
        DECLARE
            b {s}.budget%ROWTYPE;
            v_slow integer;
        BEGIN
            INSERT INTO {s}.budget (name) VALUES (p_budget) ON CONFLICT (name) DO NOTHING;
            SELECT * INTO b FROM {s}.budget WHERE name = p_budget FOR UPDATE;
            IF b.paused_until > p_now THEN
                RETURN;
            END IF;
            v_slow := {s}.budget_slowdown(b.level, b.limited_at, p_now, p_recover);
            paused_until := p_now + least(p_backoff_max, p_backoff * power(2, v_slow));
            level := least(v_slow + 1, p_max_level);
            UPDATE {s}.budget AS u
            SET paused_until = budget_limited.paused_until, level = budget_limited.level,
                limited_at = p_now
            WHERE u.name = p_budget;
        END
        $$
        """,
    ),
    4: (
        # Keeping what was made (SPEC 10.4): media is copied after a job is done too,
        # so its queue is not under jobs_due (undone jobs only); the pruner takes
        # finished jobs oldest first.
        "CREATE INDEX jobs_media_due ON {s}.jobs (due_at, job_id) WHERE work = 'media'",
        "CREATE INDEX jobs_finished ON {s}.jobs (updated_at, job_id) WHERE done",
    ),
    5: (
        # Outgoing webhooks (SPEC 10.5). Deliveries are the outbox, filled by append.
        """
        CREATE TABLE {s}.notify_subscriptions (
            id         text        NOT NULL CONSTRAINT notify_subscriptions_pkey PRIMARY KEY,
            user_id    text        NOT NULL,
            url        text        NOT NULL,
            events     text[]      NOT NULL,
            secret     text        NOT NULL,
            created_at timestamptz NOT NULL
        )
        """,
        "CREATE INDEX notify_subscriptions_user ON {s}.notify_subscriptions (user_id, created_at)",
        """
        CREATE TABLE {s}.notify_deliveries (
            subscription_id text        NOT NULL,
            job_id          text        NOT NULL,
            version         integer     NOT NULL,
            type            text        NOT NULL,
            user_id         text        NOT NULL,
            event_at        timestamptz NOT NULL,
            status          text        NOT NULL,
            attempts        integer     NOT NULL,
            next_at         timestamptz,
            lease_owner     text,
            lease_until     timestamptz,
            CONSTRAINT notify_deliveries_pkey PRIMARY KEY (subscription_id, job_id, version)
        )
        """,
        "CREATE INDEX notify_deliveries_due ON {s}.notify_deliveries (next_at)"
        " WHERE status = 'pending'",
        """
        CREATE TABLE {s}.notify_attempts (
            id              bigserial   CONSTRAINT notify_attempts_pkey PRIMARY KEY,
            subscription_id text        NOT NULL,
            job_id          text        NOT NULL,
            version         integer     NOT NULL,
            type            text        NOT NULL,
            number          integer     NOT NULL,
            at              timestamptz NOT NULL,
            status_code     integer,
            duration_ms     double precision NOT NULL,
            error           text,
            next_at         timestamptz
        )
        """,
        "CREATE INDEX notify_attempts_subscription ON {s}.notify_attempts (subscription_id, at)",
        "CREATE INDEX notify_attempts_job ON {s}.notify_attempts (job_id, at)",
    ),
    6: (
        # The fleet list (SPEC 10.3): newest first, alone or by one of the filters;
        # each ends in (created_at, job_id) so a cursor page is one range scan.
        "CREATE INDEX jobs_newest ON {s}.jobs (created_at DESC, job_id DESC)",
        "CREATE INDEX jobs_user_newest ON {s}.jobs (user_id, created_at DESC, job_id DESC)",
        "CREATE INDEX jobs_stage_newest ON {s}.jobs (stage, created_at DESC, job_id DESC)",
        "CREATE INDEX jobs_channel_newest ON {s}.jobs (channel_id, created_at DESC, job_id DESC)",
        # Stale jobs: undone, quiet since before a time.
        "CREATE INDEX jobs_quiet ON {s}.jobs (updated_at) WHERE NOT done",
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
