"""The SQLite store passes the shared store contract, and keeps SQLite's own promises."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import attrs
import pytest
import pytest_asyncio

import clipjobs_sqlite
from clipjobs.app.ports import Commit
from clipjobs.domain.commands import FailJob, MarkRequestSent
from clipjobs.domain.errors import (
    ConcurrencyError,
    ConfigError,
    InvalidRequest,
    StoreCorrupt,
    StoreError,
    StoreUnavailable,
)
from clipjobs.domain.events import GenerationParams
from clipjobs.domain.fleet import JobFilter
from clipjobs.domain.stages import Work
from clipjobs.testing import EventStoreContract, new_job, step
from clipjobs_sqlite import SQLiteEventStore, Synchronous, parse_sqlite_url
from clipjobs_sqlite._schema import LATEST

HERE = Path(__file__).parent


class TestSQLiteEventStore(EventStoreContract):
    @pytest_asyncio.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[SQLiteEventStore]:
        async with SQLiteEventStore(tmp_path / "clipjobs.db") as store:
            yield store


class TestSQLiteInMemory(EventStoreContract):
    @pytest_asyncio.fixture
    async def store(self) -> AsyncIterator[SQLiteEventStore]:
        async with SQLiteEventStore(":memory:") as store:
            yield store


def _tables(path: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {r[0] for r in rows}


def _schema_versions(path: Path) -> list[int]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return [r[0] for r in conn.execute("SELECT version FROM clipjobs_schema ORDER BY 1")]


async def _refused_open(
    path: Path, error: type[StoreError], match: str | None = None, **options: float
) -> StoreError:
    """Opening ``path`` raises ``error`` (matching ``match``), and its message names the file."""
    with pytest.raises(error, match=match) as info:
        await SQLiteEventStore.open(path, **options)
    assert str(path) in str(info.value)
    return info.value


async def _older_file(path: Path, script: str) -> Commit:
    """A file holding one new job, set back by ``script`` to what an older clipjobs left."""
    commit = new_job()
    async with SQLiteEventStore(path) as store:
        await store.append(commit)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.executescript(script)
    return commit


# --- opening, migrations ------------------------------------------------------


@pytest.mark.asyncio
async def test_an_empty_file_is_migrated_to_the_latest_schema(tmp_path: Path) -> None:
    """A zero-byte file becomes a WAL database with every table, stamped with the latest version."""
    path = tmp_path / "empty.db"
    path.touch()
    async with SQLiteEventStore(path) as store:
        commit = new_job()
        await store.append(commit)
    assert {"events", "jobs", "leases", "secrets", "orphan_callbacks", "clipjobs_schema"} <= (
        _tables(path)
    )
    assert _schema_versions(path) == list(range(1, LATEST + 1))
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.asyncio
async def test_reopening_keeps_data_and_migrates_nothing(tmp_path: Path) -> None:
    """A second open of the same file finds the jobs and applies no migration twice."""
    path = tmp_path / "again.db"
    commit = new_job()
    async with SQLiteEventStore(path) as store:
        await store.append(commit)
    store = await SQLiteEventStore.open(path)
    try:
        assert await store.load(commit.job_id) == commit.state
    finally:
        await store.aclose()
    assert _schema_versions(path) == list(range(1, LATEST + 1))


@pytest.mark.asyncio
async def test_a_version_1_database_is_migrated_with_its_jobs(tmp_path: Path) -> None:
    """A file written by the first clipjobs (schema 1) gains the workers registry, the fair
    queue's memory and the per-user indexes, keeping its jobs claimable.
    """
    path = tmp_path / "v1.db"
    commit = await _older_file(
        path,
        "DROP TABLE workers; DROP TABLE turns; DROP INDEX jobs_active_by_user;"
        " DROP INDEX jobs_created_by_user; DROP INDEX jobs_finished;"
        " DROP TABLE notify_subscriptions; DROP TABLE notify_deliveries;"
        " DROP TABLE notify_attempts;"
        " DELETE FROM clipjobs_schema WHERE version > 1;" + _DROP_FLEET,
    )
    assert _schema_versions(path) == [1]
    async with SQLiteEventStore(path) as store:
        assert await store.load(commit.job_id) == commit.state
        assert await store.count_active(commit.state.user_id) == 1
        now = commit.state.created_at + timedelta(seconds=1)
        got = await store.claim(Work.SEND, now, owner="w", limit=10, lease_s=30)
        assert [s.job_id for s in got] == [commit.job_id]
    assert _schema_versions(path) == list(range(1, LATEST + 1))
    assert {"workers", "turns"} <= _tables(path)


#: What the fleet migration (SPEC 10.3) added: dropped to play an older database.
_DROP_FLEET = (
    " DROP INDEX jobs_newest; DROP INDEX jobs_user_newest; DROP INDEX jobs_stage_newest;"
    " DROP INDEX jobs_channel_newest; DROP INDEX jobs_quiet;"
)
#: Everything after version 2 (the pruner's index, the webhook outbox, the fleet's indexes).
DROP_AFTER_V2 = (
    "DROP INDEX jobs_finished; DROP TABLE notify_subscriptions;"
    " DROP TABLE notify_deliveries; DROP TABLE notify_attempts;"
    " DELETE FROM clipjobs_schema WHERE version > 2;" + _DROP_FLEET
)


@pytest.mark.asyncio
async def test_a_version_2_database_gains_the_fleet_indexes(tmp_path: Path) -> None:
    """A file of the schema before the fleet is migrated: its jobs list by the new filters."""
    path = tmp_path / "v2.db"
    commit = await _older_file(path, DROP_AFTER_V2)
    assert _schema_versions(path) == [1, 2]
    async with SQLiteEventStore(path) as store:
        where = JobFilter(user_id=commit.state.user_id, done=False)
        assert await store.find_jobs(where) == [commit.state]
        assert await store.count_jobs(where) == {commit.state.stage: 1}
    assert _schema_versions(path) == list(range(1, LATEST + 1))
    with contextlib.closing(sqlite3.connect(path)) as conn:
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT state FROM jobs WHERE stage = 'x'"
            " ORDER BY created_at DESC, job_id DESC LIMIT 5"
        ).fetchall()
    assert "jobs_stage_newest" in str(plan)


@pytest.mark.asyncio
async def test_a_version_2_database_gains_the_finished_jobs_index_and_keeps_media_work(
    tmp_path: Path,
) -> None:
    """A file of schema 2 is migrated to 3 (the pruner's index) with its jobs as they were."""
    path = tmp_path / "v2.db"
    commit = await _older_file(path, DROP_AFTER_V2)
    assert _schema_versions(path) == [1, 2]
    async with SQLiteEventStore(path) as store:
        assert await store.load(commit.job_id) == commit.state
    assert _schema_versions(path) == list(range(1, LATEST + 1))
    with contextlib.closing(sqlite3.connect(path)) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert "jobs_finished" in names


@pytest.mark.asyncio
async def test_a_database_from_a_newer_clipjobs_is_refused(tmp_path: Path) -> None:
    """A schema version this code does not know raises StoreCorrupt naming the file and versions."""
    path = tmp_path / "newer.db"
    async with SQLiteEventStore(path):
        pass
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("INSERT INTO clipjobs_schema VALUES (?, 'later')", (LATEST + 1,))
        conn.commit()
    refused = await _refused_open(path, StoreCorrupt, "newer clipjobs")
    assert f"schema version {LATEST + 1}" in str(refused)


@pytest.mark.asyncio
async def test_a_foreign_database_is_refused(tmp_path: Path) -> None:
    """Another application's database with an ``events`` table is StoreCorrupt, left untouched."""
    path = tmp_path / "foreign.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE events (id INTEGER, what TEXT)")
        conn.commit()
    with pytest.raises(StoreCorrupt, match="did not create"):
        await SQLiteEventStore.open(path)
    assert _tables(path) == {"events"}


# --- durability ----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.asyncio
async def test_an_append_that_returned_survives_kill_9(tmp_path: Path) -> None:
    """Jobs a writer reported appended are all in the file after it is SIGKILLed mid-stream.

    A process crash only: the OS keeps the page cache, so this passes with
    ``synchronous=OFF`` too. What survives a power loss is the pragma, checked below.
    """
    path = tmp_path / "crash.db"
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "_crash_writer.py"), str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    reported: list[str] = []
    try:
        assert proc.stdout is not None
        while len(reported) < 40:
            line = await asyncio.to_thread(proc.stdout.readline)
            if not line:
                break
            reported.append(line.split()[1])
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        _, err = proc.communicate(timeout=30)
    assert len(reported) == 40, f"the writer stopped early: {err[-2000:]}"
    assert proc.returncode == -signal.SIGKILL
    async with SQLiteEventStore(path) as store:
        for job_id in reported:
            state = await store.load(job_id)
            assert state is not None and state.version == 2
            assert [r.version for r in await store.read(job_id)] == [1, 2]
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


async def _pragma(store: SQLiteEventStore, name: str) -> object:
    """``PRAGMA name`` on the connection the store's group writer commits through."""
    writer = store._writer
    assert writer is not None
    rows = list(await writer._db.execute_fetchall(f"PRAGMA {name}"))
    return rows[0][0]


@pytest.mark.asyncio
@pytest.mark.parametrize(("synchronous", "level"), [("FULL", 2), ("NORMAL", 1)])
async def test_appends_commit_with_the_synchronous_level_asked_for(
    tmp_path: Path, synchronous: Synchronous, level: int
) -> None:
    """The connection every append commits through is in WAL mode with ``synchronous`` as
    configured (FULL = 2: each commit is on disk when it returns; NORMAL = 1).
    """
    async with SQLiteEventStore(tmp_path / "sync.db", synchronous=synchronous) as store:
        await store.append(new_job())
        assert await _pragma(store, "synchronous") == level
        assert await _pragma(store, "journal_mode") == "wal"


@pytest.mark.asyncio
async def test_the_default_and_a_url_commit_with_synchronous_full(tmp_path: Path) -> None:
    """Unless asked otherwise (and as ``clipjobs serve`` opens it, from a URL) the store syncs
    every commit: ``synchronous=FULL``.
    """
    async with SQLiteEventStore(tmp_path / "default.db") as store:
        assert await _pragma(store, "synchronous") == 2
    store = await SQLiteEventStore.open_url(f"sqlite:///{tmp_path / 'url.db'}")
    try:
        assert await _pragma(store, "synchronous") == 2
    finally:
        await store.aclose()


# --- the writer ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_concurrent_appends_share_transactions(tmp_path: Path) -> None:
    """Fifty appends issued at once are committed in fewer transactions than appends."""
    async with SQLiteEventStore(tmp_path / "group.db") as store:
        commits = [new_job() for _ in range(50)]
        await asyncio.gather(*(store.append(c) for c in commits))
        writer = store._writer
        assert writer is not None
        assert writer.ops == 50
        assert writer.groups < 50


@pytest.mark.asyncio
async def test_a_failing_append_does_not_sink_its_group(tmp_path: Path) -> None:
    """Stale, duplicate and unstorable appends fail alone; the rest of the group lands."""
    async with SQLiteEventStore(tmp_path / "savepoints.db") as store:
        base = new_job()
        await store.append(base)
        moved = step(base.state, MarkRequestSent(base.state.created_at))
        await store.append(moved)
        stale = step(base.state, FailJob("X", "late", base.state.created_at))
        surrogate = new_job()
        accepted = surrogate.events[0]
        bad_params = GenerationParams(prompt="\ud800 lone surrogate")
        unstorable = Commit(
            surrogate.job_id,
            0,
            (attrs.evolve(accepted, params=bad_params),),
            attrs.evolve(surrogate.state, params=bad_params),
        )
        good = [new_job() for _ in range(10)]
        writer = store._writer
        assert writer is not None
        groups_before = writer.groups
        results = await asyncio.gather(
            *(store.append(c) for c in [*good[:5], stale, unstorable, base, *good[5:]]),
            return_exceptions=True,
        )
        assert writer.groups == groups_before + 1  # they really shared one transaction
        assert results[:5] == [None] * 5 and results[8:] == [None] * 5
        assert isinstance(results[5], ConcurrencyError)
        assert isinstance(results[6], InvalidRequest)
        assert isinstance(results[7], ConcurrencyError)
        for c in good:
            assert await store.load(c.job_id) == c.state
        assert await store.load(surrogate.job_id) is None
        assert await store.load(base.job_id) == moved.state


@pytest.mark.asyncio
async def test_a_closed_store_refuses_work_and_wakes_waiters(tmp_path: Path) -> None:
    """After aclose calls raise StoreUnavailable, waiters end at once; aclose is idempotent."""
    store = await SQLiteEventStore.open(tmp_path / "closed.db")
    commit = new_job()
    await store.append(commit)
    waiter = asyncio.create_task(store.wait_for_change(commit.job_id, 1, timeout=30))
    await asyncio.sleep(0.05)
    await store.aclose()
    await store.aclose()
    with pytest.raises(StoreUnavailable):
        await asyncio.wait_for(waiter, 5)
    with pytest.raises(StoreUnavailable):
        await store.append(new_job())
    with pytest.raises(StoreUnavailable):
        await store.load(commit.job_id)
    with pytest.raises(StoreUnavailable):
        await store.ping()


# --- error translation -----------------------------------------------------------


@contextlib.contextmanager
def _read_only(path: Path) -> Iterator[None]:
    """Make ``path`` unwritable even for root (immutable), or by mode for other users."""
    if os.geteuid() != 0:
        path.chmod(0o444)
        try:
            yield
        finally:
            path.chmod(0o644)
        return
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False).returncode:
        pytest.skip("running as root without chattr +i: cannot make a file read-only")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@pytest.mark.asyncio
async def test_a_read_only_file_is_store_unavailable(tmp_path: Path) -> None:
    """Opening a database file that cannot be written raises StoreUnavailable naming the file."""
    path = tmp_path / "ro.db"
    async with SQLiteEventStore(path) as store:
        await store.append(new_job())
    with _read_only(path):
        refused = await _refused_open(path, StoreUnavailable, "read-only")
    assert isinstance(refused.__cause__, sqlite3.Error)


@pytest.mark.asyncio
async def test_a_garbage_file_is_store_corrupt(tmp_path: Path) -> None:
    """A file that is not an SQLite database raises StoreCorrupt naming the file."""
    path = tmp_path / "garbage.db"
    path.write_bytes(b"these are not the pages you are looking for\n" * 200)
    await _refused_open(path, StoreCorrupt)


@pytest.mark.asyncio
async def test_a_locked_file_is_store_unavailable_at_open(tmp_path: Path) -> None:
    """A file another connection holds exclusively is StoreUnavailable after busy_timeout."""
    path = tmp_path / "locked.db"
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("CREATE TABLE t (a)")
        other.execute("BEGIN EXCLUSIVE")
        await _refused_open(path, StoreUnavailable, "locked", busy_timeout=0.1)
        other.execute("ROLLBACK")


@pytest.mark.asyncio
async def test_a_lock_held_elsewhere_fails_appends_until_released(tmp_path: Path) -> None:
    """While another connection holds the write lock, appends are StoreUnavailable; then work."""
    path = tmp_path / "busy.db"
    async with SQLiteEventStore(path, busy_timeout=0.1) as store:
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")
            with pytest.raises(StoreUnavailable, match="locked"):
                await store.append(new_job())
            assert await store.count_active() == 0  # readers are not held up
            other.execute("ROLLBACK")
        commit = new_job()
        await store.append(commit)
        assert await store.load(commit.job_id) == commit.state


@pytest.mark.asyncio
async def test_a_missing_directory_is_store_unavailable(tmp_path: Path) -> None:
    """A path whose directory does not exist raises StoreUnavailable naming it."""
    await _refused_open(tmp_path / "no" / "such" / "dir.db", StoreUnavailable)


@pytest.mark.asyncio
async def test_a_corrupted_projection_row_is_store_corrupt(tmp_path: Path) -> None:
    """A projection row that does not decode raises StoreCorrupt, not a cattrs error."""
    path = tmp_path / "rot.db"
    commit = new_job()
    async with SQLiteEventStore(path) as store:
        await store.append(commit)
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.execute(
                "UPDATE jobs SET state = '{\"nope\": 1}' WHERE job_id = ?", (commit.job_id,)
            )
            conn.commit()
        with pytest.raises(StoreCorrupt):
            await store.load(commit.job_id)


# --- the indexes are used -----------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "index"),
    [
        ("SELECT state FROM jobs WHERE job_id = 'x'", "sqlite_autoindex_jobs_1"),
        ("SELECT state FROM jobs WHERE task_id = 'x' ORDER BY rowid LIMIT 1", "jobs_task_id"),
        (
            "SELECT state FROM jobs WHERE user_id = 'u' AND channel_id = 'c'"
            " ORDER BY created_at DESC, job_id DESC LIMIT 20",
            "jobs_by_channel",
        ),
        (
            "SELECT job_id FROM jobs WHERE work = 'poll' AND due_at <= 'z'"
            " ORDER BY due_at, job_id LIMIT 10",
            "jobs_due",
        ),
        (
            "SELECT job_id FROM jobs WHERE deadline_at IS NOT NULL"
            " AND deadline_at <= 'z' ORDER BY deadline_at, job_id LIMIT 10",
            "jobs_deadline",
        ),
        ("SELECT count(*) FROM jobs WHERE done = 0", "jobs_active"),
    ],
)
@pytest.mark.asyncio
async def test_reads_and_scans_use_their_index(tmp_path: Path, query: str, index: str) -> None:
    """The store's look-ups and the workers' scans are index searches, never table scans."""
    path = tmp_path / "plan.db"
    async with SQLiteEventStore(path):
        pass
    with contextlib.closing(sqlite3.connect(path)) as conn:
        plan = " | ".join(r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {query}"))
    assert index in plan, plan
    assert "USE TEMP B-TREE" not in plan, plan


@pytest.mark.asyncio
async def test_claims_take_leases_in_the_file(tmp_path: Path) -> None:
    """A claim is written to the leases table, so another process opening the file sees it."""
    path = tmp_path / "leases.db"
    async with SQLiteEventStore(path) as store:
        commit = new_job()
        await store.append(commit)
        now = commit.state.created_at + timedelta(seconds=1)
        got = await store.claim(Work.SEND, now, owner="w1", limit=5, lease_s=30)
        assert [s.job_id for s in got] == [commit.job_id]
    async with SQLiteEventStore(path) as store:
        assert await store.claim(Work.SEND, now, owner="w2", limit=5, lease_s=30) == []
        assert await store.release_owner("w1") == 1
        assert len(await store.claim(Work.SEND, now, owner="w2", limit=5, lease_s=30)) == 1


# --- the public API -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///clipjobs.db", "clipjobs.db"),
        ("sqlite:///data/jobs.db", "data/jobs.db"),
        ("sqlite:////var/lib/clipjobs/jobs.db", "/var/lib/clipjobs/jobs.db"),
        ("sqlite:///:memory:", ":memory:"),
        ("sqlite:///with%20space.db", "with space.db"),
    ],
)
def test_sqlite_urls_name_their_path(url: str, path: str) -> None:
    """sqlite:///relative, sqlite:////absolute and sqlite:///:memory: parse to their paths."""
    assert parse_sqlite_url(url) == path


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://localhost/db",
        "sqlite://",
        "sqlite:///",
        "sqlite://host/file.db",
        "sqlite:///file.db?mode=ro",
        "sqlite:///dir/",
    ],
)
def test_bad_sqlite_urls_are_config_errors(url: str) -> None:
    """A URL that names no SQLite file is a ConfigError quoting it."""
    with pytest.raises(ConfigError) as info:
        parse_sqlite_url(url)
    assert url in str(info.value)


@pytest.mark.asyncio
async def test_open_url_opens_the_named_file(tmp_path: Path) -> None:
    """open_url creates the file a sqlite:////absolute URL names."""
    path = tmp_path / "from-url.db"
    store = await SQLiteEventStore.open_url(f"sqlite:///{path}")
    await store.aclose()
    assert path.exists()


def test_bad_options_are_config_errors() -> None:
    """An unknown synchronous mode or an empty group size is refused before any I/O."""
    with pytest.raises(ConfigError):
        SQLiteEventStore("x.db", synchronous="OFF")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        SQLiteEventStore("x.db", max_group=0)


def test_public_names() -> None:
    """The package exports exactly the store, its durability setting and the URL parser."""
    assert sorted(clipjobs_sqlite.__all__) == [
        "SQLiteEventStore",
        "Synchronous",
        "parse_sqlite_url",
    ]
