"""PostgreSQL only: migrations, many processes on one schema, the database going away.

Two stores opened on one schema have two pools and two LISTEN connections,
exactly as two ``clipjobs serve`` processes would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from _pg_harness import DSN, StoreFactory, backend_pids, fresh_schema, running_proxy, terminate

from clipjobs.app.ports import Commit, OrphanCallback
from clipjobs.domain.commands import FailJob, MarkRequestSent
from clipjobs.domain.errors import (
    ChannelBusy,
    ConcurrencyError,
    ConfigError,
    IdempotencyConflict,
    InvalidRequest,
    StoreCorrupt,
    StoreError,
    StoreUnavailable,
)
from clipjobs.domain.fleet import JobFilter
from clipjobs.domain.stages import Stage, Work
from clipjobs.testing import new_job, step
from clipjobs_postgres import PostgresEventStore
from clipjobs_postgres._schema import LATEST_VERSION

pytestmark = pytest.mark.asyncio

T0 = datetime(2026, 3, 1, tzinfo=UTC)
TABLES = {"events", "jobs", "leases", "secrets", "orphans", "schema_version", "workers", "turns"}
TABLES |= {"budget", "budget_calls", "budget_waiters"}
TABLES |= {"notify_subscriptions", "notify_deliveries", "notify_attempts"}


async def _tables(admin: asyncpg.Connection, schema: str) -> set[str]:
    rows = await admin.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema
    )
    return {r["table_name"] for r in rows}


async def _versions(admin: asyncpg.Connection, schema: str) -> list[int]:
    rows = await admin.fetch(f'SELECT version FROM "{schema}".schema_version ORDER BY version')
    return [r["version"] for r in rows]


# --- schema and migrations ---------------------------------------------------


async def test_migrates_an_empty_schema_and_reopens_without_migrating_again(
    admin: asyncpg.Connection, schema: str, stores: StoreFactory
) -> None:
    """The first open creates every table once; reopening keeps the data and stamps nothing new."""
    assert await _tables(admin, schema) == set()
    first = await stores()
    assert await _tables(admin, schema) == TABLES
    assert await _versions(admin, schema) == list(range(1, LATEST_VERSION + 1))
    commit = new_job()
    await first.append(commit)
    await first.aclose()

    second = await stores()
    assert await _versions(admin, schema) == list(range(1, LATEST_VERSION + 1))
    assert await second.load(commit.job_id) == commit.state


async def test_a_version_1_schema_is_migrated_with_its_jobs(
    admin: asyncpg.Connection, schema: str, stores: StoreFactory
) -> None:
    """A schema written by the first clipjobs (version 1) gains the workers registry, the fair
    queue's memory, the per-user indexes and the shared Suno budget, keeping its jobs claimable.
    """
    s = f'"{schema}"'
    commit = await _job_in_older_schema(
        stores,
        admin,
        f"DROP TABLE {s}.workers; DROP TABLE {s}.turns; DROP SEQUENCE {s}.handouts;"
        f" DROP INDEX {s}.jobs_active_by_user;"
        f" DROP INDEX {s}.jobs_created_by_user; DELETE FROM {s}.schema_version WHERE version > 1;"
        f" DROP TABLE {s}.budget, {s}.budget_calls, {s}.budget_waiters;"
        f" DROP FUNCTION {s}.budget_take, {s}.budget_limited, {s}.budget_slowdown;"
        f" DROP INDEX {s}.jobs_media_due, {s}.jobs_finished;"
        f" DROP TABLE {s}.notify_subscriptions, {s}.notify_deliveries, {s}.notify_attempts;"
        + _drop_fleet(s),
    )
    assert await _versions(admin, schema) == [1]
    store = await stores()
    assert await store.load(commit.job_id) == commit.state
    assert await store.count_active(commit.state.user_id) == 1
    now = commit.state.created_at + timedelta(seconds=1)
    got = await store.claim(Work.SEND, now, owner="w", limit=10, lease_s=30)
    assert [s.job_id for s in got] == [commit.job_id]
    assert await _versions(admin, schema) == list(range(1, LATEST_VERSION + 1))
    assert await _tables(admin, schema) == TABLES


async def _job_in_older_schema(
    stores: StoreFactory, admin: asyncpg.Connection, older_sql: str
) -> Commit:
    """One job stored and the store closed; then ``older_sql`` plays the schema back."""
    store = await stores()
    commit = new_job()
    await store.append(commit)
    await store.aclose()
    await admin.execute(older_sql)
    return commit


def _drop_fleet(s: str) -> str:
    """What the fleet migration (SPEC 10.3) added: dropped to play an older schema."""
    return (
        f" DROP INDEX {s}.jobs_newest, {s}.jobs_user_newest, {s}.jobs_stage_newest,"
        f" {s}.jobs_channel_newest, {s}.jobs_quiet"
    )


async def test_a_version_3_schema_gains_media_webhook_and_fleet_objects(
    admin: asyncpg.Connection, schema: str, stores: StoreFactory
) -> None:
    """A schema of version 3 migrates to the latest: the media and pruner indexes (4), the
    webhook outbox (5) and the fleet's indexes (6); its jobs load and list by the new filters.
    """
    s = f'"{schema}"'
    commit = await _job_in_older_schema(
        stores,
        admin,
        f"DROP INDEX {s}.jobs_media_due, {s}.jobs_finished;"
        f" DROP TABLE {s}.notify_subscriptions, {s}.notify_deliveries, {s}.notify_attempts;"
        f" DELETE FROM {s}.schema_version WHERE version > 3;" + _drop_fleet(s),
    )
    assert await _versions(admin, schema) == [1, 2, 3]
    store = await stores()
    assert await store.load(commit.job_id) == commit.state
    where = JobFilter(user_id=commit.state.user_id, done=False)
    assert await store.find_jobs(where) == [commit.state]
    assert await store.count_jobs(where) == {commit.state.stage: 1}
    assert await _versions(admin, schema) == list(range(1, LATEST_VERSION + 1))
    names = await admin.fetch("SELECT indexname FROM pg_indexes WHERE schemaname = $1", schema)
    wanted = {"jobs_media_due", "jobs_finished", "jobs_newest", "jobs_stage_newest", "jobs_quiet"}
    assert wanted <= {r[0] for r in names}
    assert await _tables(admin, schema) == TABLES


async def test_processes_starting_together_migrate_once(
    admin: asyncpg.Connection, schema: str, stores: StoreFactory
) -> None:
    """Four stores opening one empty schema at once migrate it once (advisory lock)."""
    opened = await asyncio.gather(*(stores() for _ in range(4)))
    assert await _versions(admin, schema) == list(range(1, LATEST_VERSION + 1))
    commit = new_job()
    await opened[0].append(commit)
    assert all([await s.load(commit.job_id) == commit.state for s in opened])


async def test_a_schema_from_a_newer_clipjobs_is_refused_untouched(
    admin: asyncpg.Connection, schema: str
) -> None:
    """A schema stamped with an unknown, newer version is StoreCorrupt and left alone."""
    newer = LATEST_VERSION + 1
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    await admin.execute(
        f'CREATE TABLE "{schema}".schema_version'
        " (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
    )
    await admin.execute(f'INSERT INTO "{schema}".schema_version (version) VALUES ($1)', newer)
    with pytest.raises(StoreCorrupt) as caught:
        await PostgresEventStore.open(DSN, schema)
    message = str(caught.value)
    assert f"version {newer}" in message and "newer" in message and "upgrade clipjobs" in message
    assert await _tables(admin, schema) == {"schema_version"}
    assert await _versions(admin, schema) == [newer]


@pytest.mark.parametrize(
    "name",
    ["Clipjobs", "clip-jobs", 'x"; DROP SCHEMA public CASCADE; --', "1abc", "", "a" * 49],
)
async def test_a_bad_schema_name_is_a_config_error(name: str) -> None:
    """Schema names are checked before any SQL: case, quotes, dashes, length."""
    with pytest.raises(ConfigError) as caught:
        await PostgresEventStore.open(DSN, name)
    assert "schema name" in str(caught.value)


# --- many processes on one schema ----------------------------------------------


async def test_two_processes_never_claim_the_same_job(stores: StoreFactory) -> None:
    """Claims racing from two pools (SKIP LOCKED + the lease upsert) hand every due job out once."""
    a, b = await stores(), await stores()
    base = T0 - timedelta(days=4000)
    commits = [new_job(at=base) for _ in range(60)]
    await asyncio.gather(*(a.append(c) for c in commits))
    ours = {c.job_id for c in commits}
    now = base + timedelta(seconds=1)

    async def drain(store: PostgresEventStore, owner: str) -> list[str]:
        got: list[str] = []
        while batch := await store.claim(Work.SEND, now, owner=owner, limit=3, lease_s=60):
            got += [s.job_id for s in batch if s.job_id in ours]
        return got

    results = await asyncio.gather(
        *(drain(store, f"{name}-{i}") for i in range(4) for name, store in (("a", a), ("b", b)))
    )
    claimed = [job for r in results for job in r]
    assert len(claimed) == len(set(claimed))
    assert set(claimed) == ours
    # Both processes got work: the race was real.
    a_got = {j for r in results[0::2] for j in r}
    b_got = {j for r in results[1::2] for j in r}
    assert a_got and b_got and not a_got & b_got


async def test_an_expired_lease_is_taken_over_by_another_process(stores: StoreFactory) -> None:
    """A dead process's lease runs out; then the other process claims the job and owns it."""
    a, b = await stores(), await stores()
    commit = new_job()
    await a.append(commit)
    now = T0 + timedelta(seconds=5)
    assert [s.job_id for s in await a.claim(Work.SEND, now, owner="a", limit=1, lease_s=30)] == [
        commit.job_id
    ]
    during = await b.claim(
        Work.SEND, now + timedelta(seconds=29), owner="b", limit=10_000, lease_s=30
    )
    assert commit.job_id not in {s.job_id for s in during}
    after = await b.claim(
        Work.SEND, now + timedelta(seconds=31), owner="b", limit=10_000, lease_s=30
    )
    assert commit.job_id in {s.job_id for s in after}
    later = now + timedelta(seconds=32)
    assert not await a.renew(commit.job_id, Work.SEND, later, owner="a", lease_s=30)
    assert await b.renew(commit.job_id, Work.SEND, later, owner="b", lease_s=30)


async def test_appends_racing_from_two_processes_have_one_winner_and_no_half_writes(
    stores: StoreFactory,
) -> None:
    """Per job, one of two commits at one version lands whole; the other leaves no trace."""
    a, b = await stores(), await stores()
    created = [new_job() for _ in range(20)]
    await asyncio.gather(*(a.append(c) for c in created))
    sent = [step(c.state, MarkRequestSent(T0)) for c in created]
    await asyncio.gather(*(a.append(c) for c in sent))
    # Each attempt appends two events (a failure after a sent request is one,
    # so chain from an earlier version to get several in one commit).
    attempts = []
    for c in sent:
        first = step(c.state, FailJob("E_A", "from a", T0 + timedelta(seconds=1)))
        second = step(c.state, FailJob("E_B", "from b", T0 + timedelta(seconds=2)))
        attempts.append((first, second))
    results = await asyncio.gather(
        *(s.append(x) for pair in attempts for s, x in zip((a, b), pair, strict=True)),
        return_exceptions=True,
    )
    for i, (first, second) in enumerate(attempts):
        ra, rb = results[2 * i], results[2 * i + 1]
        assert (ra is None) != (rb is None), (ra, rb)
        loser = ra if ra is not None else rb
        assert type(loser) is ConcurrencyError
        winner = first if ra is None else second
        log = await b.read(first.job_id)
        assert [r.version for r in log] == list(range(1, winner.state.version + 1))
        assert [r.event for r in log[-len(winner.events) :]] == list(winner.events)
        assert await a.load(first.job_id) == winner.state


async def test_new_jobs_racing_for_a_channel_or_a_key_across_processes(
    stores: StoreFactory,
) -> None:
    """New jobs racing for one channel or one key across processes: one wins, one learns who."""
    a, b = await stores(), await stores()
    for _ in range(10):
        one = new_job(channel_id="ch-race", user_id="u", exclusive=True)
        two = new_job(channel_id="ch-race", user_id="u", exclusive=True)
        results = await asyncio.gather(a.append(one), b.append(two), return_exceptions=True)
        [won] = [c for c, r in zip((one, two), results, strict=True) if r is None]
        [lost] = [r for r in results if r is not None]
        assert isinstance(lost, ChannelBusy) and lost.job_id == won.job_id
        await a.append(step(won.state, FailJob("E", "free the channel", T0)))

    one = new_job(user_id="u", key="same-key")
    two = new_job(user_id="u", key="same-key")
    results = await asyncio.gather(a.append(one), b.append(two), return_exceptions=True)
    [won] = [c for c, r in zip((one, two), results, strict=True) if r is None]
    [lost] = [r for r in results if r is not None]
    assert isinstance(lost, IdempotencyConflict) and lost.job_id == won.job_id
    loser = two if won is one else one
    assert await a.load(loser.job_id) is None and await a.read(loser.job_id) == []


# --- the change feed across processes ----------------------------------------


async def test_another_process_append_wakes_a_waiter(stores: StoreFactory) -> None:
    """Store B's wait_for_change returns when store A commits (LISTEN/NOTIFY; B never polls)."""
    a, b = await stores(), await stores()
    commit = new_job()
    await a.append(commit)
    waiter = asyncio.create_task(b.wait_for_change(commit.job_id, 1, timeout=60))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await a.append(step(commit.state, MarkRequestSent(T0)))
    assert await asyncio.wait_for(waiter, 30) is True


async def test_the_listener_reconnects_after_its_backend_is_killed(
    admin: asyncpg.Connection, stores: StoreFactory
) -> None:
    """B's LISTEN backend killed: B reconnects, wakes waiters (sees a missed commit), hears more."""
    a = await stores()
    b = await stores(reconnect_backoff_s=(0.5, 1.0))
    commit = new_job()
    await a.append(commit)
    listener = b._listener
    old_pid = listener.server_pid
    assert old_pid in await backend_pids(admin, f"clipjobs-listen:{b.schema}")

    waiter = asyncio.create_task(b.wait_for_change(commit.job_id, 1, timeout=60))
    await asyncio.sleep(0.05)
    await terminate(admin, [old_pid])
    while listener.connected:
        await asyncio.sleep(0.01)
    # B is deaf now: this commit's notification is lost, only the reconnect can wake the waiter.
    sent = step(commit.state, MarkRequestSent(T0))
    await a.append(sent)
    assert await asyncio.wait_for(waiter, 30) is True
    assert listener.reconnects == 1
    assert listener.server_pid not in (None, old_pid)

    later = asyncio.create_task(b.wait_for_change(commit.job_id, 2, timeout=60))
    await asyncio.sleep(0.05)
    assert not later.done()
    await a.append(step(sent.state, FailJob("E", "stop", T0)))
    assert await asyncio.wait_for(later, 30) is True
    assert listener.reconnects == 1


# --- the database going away ---------------------------------------------------


async def test_killed_pool_connections_mid_append_leave_nothing_and_the_store_recovers(
    admin: asyncpg.Connection, stores: StoreFactory
) -> None:
    """An append killed mid-transaction is StoreUnavailable and writes nothing; the next works."""
    store = await stores()
    commit = new_job()
    await store.append(commit)
    nxt = step(commit.state, MarkRequestSent(T0))
    # An operator's open transaction holds the job row, so the append waits inside its own.
    lock = admin.transaction()
    await lock.start()
    try:
        await admin.execute(
            f'SELECT 1 FROM "{store.schema}".jobs WHERE job_id = $1 FOR UPDATE', commit.job_id
        )
        attempt = asyncio.create_task(store.append(nxt))
        pool_app = f"clipjobs:{store.schema}"
        while not await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
            " AND wait_event_type = 'Lock'",
            pool_app,
        ):
            await asyncio.sleep(0.01)
        await terminate(admin, await backend_pids(admin, pool_app))
        with pytest.raises(StoreUnavailable) as caught:
            await attempt
        assert not isinstance(caught.value.__cause__, StoreError)
    finally:
        await lock.rollback()
    assert [r.version for r in await store.read(commit.job_id)] == [1]
    assert await store.load(commit.job_id) == commit.state
    await store.append(nxt)
    assert await store.load(commit.job_id) == nxt.state


async def test_an_unreachable_database_is_store_unavailable_everywhere_then_recovers(
    stores: StoreFactory,
) -> None:
    """Server gone: every call is StoreUnavailable (no asyncpg error); server back: all works."""
    async with running_proxy(DSN) as proxy:
        store = await stores(proxy.dsn(DSN), connect_timeout_s=2.0, reconnect_backoff_s=(0.05, 0.2))
        other = await stores()
        commit = new_job()
        await store.append(commit)
        nxt = step(commit.state, MarkRequestSent(T0))

        await proxy.drop()
        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "ping": lambda: store.ping(),
            "append": lambda: store.append(nxt),
            "load": lambda: store.load(commit.job_id),
            "read": lambda: store.read(commit.job_id),
            "find_by_task_id": lambda: store.find_by_task_id("t"),
            "find_by_idempotency_key": lambda: store.find_by_idempotency_key("u", "k"),
            "find_channel_holder": lambda: store.find_channel_holder("u", "c"),
            "list_jobs": lambda: store.list_jobs("u", "c"),
            "claim": lambda: store.claim(Work.SEND, T0, owner="o", limit=5, lease_s=5),
            "renew": lambda: store.renew(commit.job_id, Work.SEND, T0, owner="o", lease_s=5),
            "release": lambda: store.release(commit.job_id, Work.SEND, owner="o"),
            "release_owner": lambda: store.release_owner("o"),
            "wait_for_change": lambda: store.wait_for_change(commit.job_id, 1, 1.0),
            "ensure_secret": lambda: store.ensure_secret("s", "v"),
            "record_orphan": lambda: store.record_orphan(OrphanCallback(T0, None, "{}", "test")),
            "list_orphans": lambda: store.list_orphans(),
            "count_active": lambda: store.count_active(),
        }
        for name, call in calls.items():
            with pytest.raises(StoreUnavailable) as caught:
                await call()
            cause = caught.value.__cause__
            assert cause is not None and not isinstance(cause, StoreError), name
            assert "PostgreSQL" in str(caught.value), name
        # Nothing of the refused append reached the database.
        assert await other.load(commit.job_id) == commit.state

        await proxy.restore()
        await store.ping()
        await store.append(nxt)
        assert await other.load(commit.job_id) == nxt.state
        # The listener came back too: another process's commit wakes this one again.
        listener = store._listener
        while not listener.connected:
            await asyncio.sleep(0.02)
        waiter = asyncio.create_task(store.wait_for_change(commit.job_id, 2, timeout=60))
        await asyncio.sleep(0.05)
        await other.append(step(nxt.state, FailJob("E", "stop", T0)))
        assert await asyncio.wait_for(waiter, 30) is True
        assert listener.reconnects >= 1


async def test_closing_while_the_listener_cannot_reconnect_returns(stores: StoreFactory) -> None:
    """aclose() returns while the LISTEN connection is retrying against a server that is gone."""
    async with running_proxy(DSN) as proxy:
        opened = [
            await stores(proxy.dsn(DSN), connect_timeout_s=1.0, reconnect_backoff_s=(0.001, 0.01))
            for _ in range(5)
        ]
        await proxy.drop()
        for i, store in enumerate(opened):
            while store._listener.connected:
                await asyncio.sleep(0.001)
            await asyncio.sleep(0.003 * i)  # land in a sleep or in a connect attempt
            # A bound only so a regression fails instead of hanging the suite.
            await asyncio.wait_for(store.aclose(), 60)
            with pytest.raises(StoreUnavailable, match="closed"):
                await store.ping()


async def test_opening_while_the_database_is_unreachable_is_store_unavailable() -> None:
    """Start-up against a server that does not answer is one StoreUnavailable."""
    async with running_proxy(DSN) as proxy:
        await proxy.drop()
        with pytest.raises(StoreUnavailable) as caught:
            await PostgresEventStore.open(proxy.dsn(DSN), fresh_schema(), connect_timeout_s=2.0)
        assert "PostgreSQL is unavailable" in str(caught.value)


# --- error translation -----------------------------------------------------------


async def test_a_missing_database_or_role_is_a_config_error() -> None:
    """A DSN naming a database or a role that does not exist stops start-up with ConfigError."""
    base = DSN.rsplit("/", 1)[0]
    with pytest.raises(ConfigError, match="refused the configured connection"):
        await PostgresEventStore.open(f"{base}/no_such_db_{fresh_schema()}", fresh_schema())
    no_role = DSN.replace("//postgres@", "//no_such_role@")
    if no_role != DSN:
        with pytest.raises(ConfigError, match="refused the configured connection"):
            await PostgresEventStore.open(no_role, fresh_schema())


async def test_text_postgresql_cannot_store_is_invalid_request(stores: StoreFactory) -> None:
    """A NUL or a lone surrogate in stored text is InvalidRequest, and the job is not created."""
    store = await stores()
    for bad in ("nul\x00here", "lone\ud800surrogate"):
        commit = new_job(key=bad)
        with pytest.raises(InvalidRequest):
            await store.append(commit)
        assert await store.load(commit.job_id) is None


async def test_a_schema_dropped_under_a_running_store_is_store_corrupt(
    admin: asyncpg.Connection, stores: StoreFactory
) -> None:
    """Tables gone from under the store are StoreCorrupt, not a driver error."""
    store = await stores()
    await admin.execute(f'DROP SCHEMA "{store.schema}" CASCADE')
    with pytest.raises(StoreCorrupt, match="schema is missing"):
        await store.load("job_x")


async def test_an_unreadable_projection_row_is_store_corrupt(
    admin: asyncpg.Connection, stores: StoreFactory
) -> None:
    """A projection row that does not decode is StoreCorrupt."""
    store = await stores()
    commit = new_job()
    await store.append(commit)
    await admin.execute(
        f'UPDATE "{store.schema}".jobs SET state = $2 WHERE job_id = $1', commit.job_id, "{not json"
    )
    with pytest.raises(StoreCorrupt):
        await store.load(commit.job_id)


async def test_a_lost_channel_lock_race_sees_the_job_stage(stores: StoreFactory) -> None:
    """After a ChannelBusy the holder is visible to both processes as the running job."""
    a, b = await stores(), await stores()
    holder = new_job(channel_id="ch", user_id="u", exclusive=True)
    await a.append(holder)
    with pytest.raises(ChannelBusy):
        await b.append(new_job(channel_id="ch", user_id="u", exclusive=True))
    found = await b.find_channel_holder("u", "ch")
    assert (
        found is not None
        and found.job_id == holder.job_id
        and found.stage is Stage.REQUEST_ACCEPTED
    )
