"""``EventStoreContract``: the one test suite every ``EventStore`` must pass.

Subclass it and override the ``store`` fixture (an async generator yielding
an open store). The tests never assume an empty database: every test makes
new ids, and claims are filtered to the test's own jobs.
"""

from __future__ import annotations

import asyncio
import random
import secrets
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import attrs
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ..app._fair import fair_order
from ..app.ports import Commit, Due, EventStore, OrphanCallback, WorkerInfo
from ..domain._decide import decide
from ..domain._fold import fold
from ..domain.commands import (
    Command,
    FailJob,
    KeepMedia,
    MarkRequestSent,
    RecordObservation,
    RecordTaskCreated,
    StartJob,
)
from ..domain.errors import ChannelBusy, ConcurrencyError, IdempotencyConflict
from ..domain.events import (
    Event,
    GenerationParams,
    JobAccepted,
    JobPolicy,
    MediaKind,
    Observation,
    ProviderStatus,
    Source,
    Track,
)
from ..domain.stages import Stage, Work
from ..domain.state import JobState
from . import strategies
from ._fleet_contract import FleetContract

__all__ = ["EventStoreContract", "new_job", "step"]

_BASE = datetime(2026, 3, 1, tzinfo=UTC)


def _rand(n: int = 8) -> str:
    return secrets.token_hex(n // 2)


def new_job(
    *,
    at: datetime = _BASE,
    channel_id: str | None = None,
    user_id: str | None = None,
    key: str | None = None,
    exclusive: bool = False,
    policy: JobPolicy | None = None,
) -> Commit:
    """A commit that creates a fresh job (new random ids unless given)."""
    command = StartJob(
        job_id=f"job_{int(at.timestamp() * 1000)}_{_rand(10)}",
        channel_id=channel_id or f"ch-{_rand()}",
        user_id=user_id or f"user-{_rand()}",
        request_id=f"req_{_rand()}",
        params=GenerationParams(prompt="a song"),
        at=at,
        idempotency_key=key,
        fingerprint="fp",
        policy=policy or JobPolicy(),
        exclusive=exclusive,
    )
    events = decide(command, None)
    return Commit(command.job_id, 0, tuple(events), fold(events))


def step(state: JobState, command: Command) -> Commit:
    """The commit that applies ``command`` to ``state`` (it must decide something)."""
    events = decide(command, state)
    if not events:
        raise AssertionError(f"{command!r} decides nothing in {state.stage}")
    return Commit(state.job_id, state.version, tuple(events), fold(events, state))


def _owner() -> str:
    return f"worker-{_rand()}"


def _ancient() -> datetime:
    """A moment long before any other test's jobs, so claims at it see only this test's."""
    return _BASE - timedelta(days=3650 + int.from_bytes(secrets.token_bytes(2), "big"))


class EventStoreContract(FleetContract):
    """Behaviour every EventStore guarantees. Override the ``store`` fixture.

    The override is a ``pytest_asyncio.fixture`` yielding an open store.
    """

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.asyncio]

    @pytest_asyncio.fixture
    async def store(self) -> EventStore:  # pragma: no cover - overridden
        raise NotImplementedError("subclasses provide an open store (an async fixture)")

    # --- append and read ---------------------------------------------------

    async def test_append_then_load_and_read(self, store: EventStore) -> None:
        """A new job's projection and log are readable right after the append."""
        commit = new_job()
        await store.append(commit)
        assert await store.load(commit.job_id) == commit.state
        log = await store.read(commit.job_id)
        assert [r.version for r in log] == [1]
        assert [r.event for r in log] == list(commit.events)
        assert log[0].recorded_at == commit.events[0].at

    async def test_unknown_job_reads_as_none_and_empty(self, store: EventStore) -> None:
        """Unknown ids load as None and read as an empty log."""
        assert await store.load(f"job_0_{_rand()}") is None
        assert await store.read(f"job_0_{_rand()}") == []

    async def test_versions_are_contiguous_across_batches(self, store: EventStore) -> None:
        """Batches append as consecutive versions; read(after) returns the tail."""
        c1 = new_job()
        await store.append(c1)
        c2 = step(c1.state, MarkRequestSent(_BASE + timedelta(seconds=1)))
        await store.append(c2)
        obs = Observation("task1", ProviderStatus.TEXT_SUCCESS)
        c3 = step(c2.state, RecordObservation(obs, Source.CALLBACK, _BASE + timedelta(seconds=2)))
        assert len(c3.events) == 2  # task adopted from the callback, then the progress
        await store.append(c3)
        log = await store.read(c1.job_id)
        assert [r.version for r in log] == [1, 2, 3, 4]
        assert [r.version for r in await store.read(c1.job_id, after_version=2)] == [3, 4]
        assert await store.load(c1.job_id) == c3.state == fold([r.event for r in log])

    async def test_stale_version_raises_and_changes_nothing(self, store: EventStore) -> None:
        """An append decided on an old version raises ConcurrencyError and writes nothing."""
        c1 = new_job()
        await store.append(c1)
        c2 = step(c1.state, MarkRequestSent(_BASE))
        await store.append(c2)
        stale = step(c1.state, FailJob("X", "late", _BASE))
        with pytest.raises(ConcurrencyError):
            await store.append(stale)
        assert await store.load(c1.job_id) == c2.state
        assert len(await store.read(c1.job_id)) == 2

    async def test_creating_an_existing_job_raises(self, store: EventStore) -> None:
        """A second commit at version 0 for the same id is a ConcurrencyError."""
        c1 = new_job()
        await store.append(c1)
        with pytest.raises(ConcurrencyError):
            await store.append(c1)
        assert len(await store.read(c1.job_id)) == 1

    async def test_concurrent_appends_one_winner(self, store: EventStore) -> None:
        """Ten appends racing at the same version: exactly one lands."""
        c1 = new_job()
        await store.append(c1)
        attempts = [
            step(c1.state, FailJob(f"E{i}", "race", _BASE + timedelta(seconds=i)))
            for i in range(10)
        ]
        results = await asyncio.gather(*(store.append(a) for a in attempts), return_exceptions=True)
        wins = [r for r in results if r is None]
        assert len(wins) == 1
        assert all(isinstance(r, ConcurrencyError) for r in results if r is not None)
        log = await store.read(c1.job_id)
        assert [r.version for r in log] == [1, 2]
        state = await store.load(c1.job_id)
        assert state is not None and state.stage is Stage.FAILED

    async def test_many_jobs_append_concurrently(self, store: EventStore) -> None:
        """Fifty jobs created and advanced at once all land, each log contiguous."""
        commits = [new_job() for _ in range(50)]
        await asyncio.gather(*(store.append(c) for c in commits))
        nexts = [step(c.state, MarkRequestSent(_BASE)) for c in commits]
        await asyncio.gather(*(store.append(c) for c in nexts))
        for c in nexts:
            assert [r.version for r in await store.read(c.job_id)] == [1, 2]
            assert await store.load(c.job_id) == c.state

    # --- lookups -----------------------------------------------------------

    async def test_find_by_task_id(self, store: EventStore) -> None:
        """A job is found by its Suno task id once recorded."""
        c1 = new_job()
        await store.append(c1)
        c2 = step(c1.state, MarkRequestSent(_BASE))
        await store.append(c2)
        task = _rand(32)
        assert await store.find_by_task_id(task) is None
        c3 = step(c2.state, RecordTaskCreated(task, _BASE))
        await store.append(c3)
        found = await store.find_by_task_id(task)
        assert found is not None and found.job_id == c1.job_id

    async def test_idempotency_key_is_unique_per_user(self, store: EventStore) -> None:
        """Same user and key twice conflicts; another user may use the same key."""
        user, key = f"u-{_rand()}", f"key-{_rand()}"
        first = new_job(user_id=user, key=key)
        await store.append(first)
        found = await store.find_by_idempotency_key(user, key)
        assert found is not None and found.job_id == first.job_id
        with pytest.raises(IdempotencyConflict) as info:
            await store.append(new_job(user_id=user, key=key))
        assert info.value.job_id == first.job_id
        await store.append(new_job(user_id=f"u-{_rand()}", key=key))
        assert await store.find_by_idempotency_key(f"u-{_rand()}", key) is None

    async def test_channel_is_held_while_a_job_runs(self, store: EventStore) -> None:
        """An exclusive active job holds its channel until it ends."""
        user, channel = f"u-{_rand()}", f"ch-{_rand()}"
        first = new_job(user_id=user, channel_id=channel, exclusive=True)
        await store.append(first)
        holder = await store.find_channel_holder(user, channel)
        assert holder is not None and holder.job_id == first.job_id
        with pytest.raises(ChannelBusy) as info:
            await store.append(new_job(user_id=user, channel_id=channel, exclusive=True))
        assert info.value.job_id == first.job_id
        # Non-exclusive jobs and other users are not held back.
        await store.append(new_job(user_id=user, channel_id=channel, exclusive=False))
        await store.append(new_job(channel_id=channel, exclusive=True))
        await store.append(step(first.state, FailJob("X", "done", _BASE)))
        assert await store.find_channel_holder(user, channel) is None
        await store.append(new_job(user_id=user, channel_id=channel, exclusive=True))

    async def test_list_jobs_newest_first(self, store: EventStore) -> None:
        """A user's jobs on a channel come newest first, limited, nobody else's."""
        user, channel = f"u-{_rand()}", f"ch-{_rand()}"
        made = []
        for i in range(5):
            c = new_job(user_id=user, channel_id=channel, at=_BASE + timedelta(minutes=i))
            await store.append(c)
            made.append(c.job_id)
        await store.append(new_job(channel_id=channel))
        await store.append(new_job(user_id=user))
        listed = await store.list_jobs(user, channel, limit=3)
        assert [s.job_id for s in listed] == list(reversed(made))[:3]
        assert len(await store.list_jobs(user, channel, limit=50)) == 5

    # --- leases --------------------------------------------------------------

    async def test_claim_takes_due_jobs_oldest_first(self, store: EventStore) -> None:
        """Due SEND jobs are claimed oldest first; jobs due later are left."""
        base = _BASE + timedelta(days=int.from_bytes(secrets.token_bytes(2), "big"))
        jobs = [new_job(at=base + timedelta(seconds=s)) for s in (30, 10, 20, 500)]
        for c in jobs:
            await store.append(c)
        ours = {c.job_id for c in jobs}
        got = await store.claim(
            Work.SEND, base + timedelta(seconds=60), owner=_owner(), limit=10_000, lease_s=30
        )
        mine = [s.job_id for s in got if s.job_id in ours]
        assert mine == [jobs[1].job_id, jobs[2].job_id, jobs[0].job_id]
        assert all(s.work is Work.SEND for s in got)

    async def test_claimed_jobs_are_skipped_until_the_lease_expires(
        self, store: EventStore
    ) -> None:
        """A leased job is not claimed again until its lease runs out."""
        c = new_job()
        await store.append(c)
        now = _BASE + timedelta(seconds=5)
        a, b = _owner(), _owner()
        first = await store.claim(Work.SEND, now, owner=a, limit=10_000, lease_s=30)
        assert c.job_id in {s.job_id for s in first}
        again = await store.claim(Work.SEND, now, owner=b, limit=10_000, lease_s=30)
        assert c.job_id not in {s.job_id for s in again}
        later = await store.claim(
            Work.SEND, now + timedelta(seconds=31), owner=b, limit=10_000, lease_s=30
        )
        assert c.job_id in {s.job_id for s in later}
        # The lease is b's now: a cannot renew it, b can.
        t = now + timedelta(seconds=32)
        assert not await store.renew(c.job_id, Work.SEND, t, owner=a, lease_s=30)
        assert await store.renew(c.job_id, Work.SEND, t, owner=b, lease_s=30)

    async def test_release_makes_a_job_claimable(self, store: EventStore) -> None:
        """Released leases (one by one, or all of an owner's) free their jobs at once."""
        c1, c2 = new_job(), new_job()
        await store.append(c1)
        await store.append(c2)
        owner, now = _owner(), _BASE + timedelta(seconds=1)
        got = await store.claim(Work.SEND, now, owner=owner, limit=10_000, lease_s=300)
        assert {c1.job_id, c2.job_id} <= {s.job_id for s in got}
        await store.release(c1.job_id, Work.SEND, owner=owner)
        await store.release(c1.job_id, Work.SEND, owner=owner)  # idempotent
        other = await store.claim(Work.SEND, now, owner=_owner(), limit=10_000, lease_s=300)
        ids = {s.job_id for s in other}
        assert c1.job_id in ids and c2.job_id not in ids
        assert await store.release_owner(owner) >= 1
        third = await store.claim(Work.SEND, now, owner=_owner(), limit=10_000, lease_s=300)
        assert c2.job_id in {s.job_id for s in third}

    async def test_leases_are_per_kind_of_work(self, store: EventStore) -> None:
        """A poll lease does not stop the sweeper from claiming the same job."""
        policy = JobPolicy(timeout_s=60, poll_after_s=10)
        c1 = new_job(policy=policy)
        await store.append(c1)
        c2 = step(c1.state, MarkRequestSent(_BASE))
        await store.append(c2)
        c3 = step(c2.state, RecordTaskCreated(_rand(32), _BASE))
        await store.append(c3)
        now = _BASE + timedelta(seconds=61)
        polled = await store.claim(Work.POLL, now, owner=_owner(), limit=10_000, lease_s=300)
        assert c1.job_id in {s.job_id for s in polled}
        swept = await store.claim(Work.SWEEP, now, owner=_owner(), limit=10_000, lease_s=300)
        assert c1.job_id in {s.job_id for s in swept}
        early = await store.claim(
            Work.SWEEP, _BASE + timedelta(seconds=59), owner=_owner(), limit=10_000, lease_s=1
        )
        assert c1.job_id not in {s.job_id for s in early}

    async def test_concurrent_claims_are_disjoint(self, store: EventStore) -> None:
        """Claims racing from many owners never hand out the same job twice."""
        base = _BASE - timedelta(days=3650 + int.from_bytes(secrets.token_bytes(2), "big"))
        commits = [new_job(at=base) for _ in range(40)]
        for c in commits:
            await store.append(c)
        ours = {c.job_id for c in commits}
        results = await asyncio.gather(
            *(
                store.claim(
                    Work.SEND, base + timedelta(seconds=1), owner=_owner(), limit=7, lease_s=60
                )
                for _ in range(12)
            )
        )
        seen: list[str] = [s.job_id for r in results for s in r if s.job_id in ours]
        assert len(seen) == len(set(seen))
        assert all(len(r) <= 7 for r in results)

    async def test_done_jobs_are_never_claimed(self, store: EventStore) -> None:
        """A finished job is no one's work."""
        c1 = new_job()
        await store.append(c1)
        await store.append(step(c1.state, FailJob("X", "stop", _BASE)))
        later = _BASE + timedelta(days=1)
        for work in Work:
            got = await store.claim(work, later, owner=_owner(), limit=10_000, lease_s=1)
            assert c1.job_id not in {s.job_id for s in got}

    async def test_a_finished_job_still_waits_for_its_media_copy(self, store: EventStore) -> None:
        """A succeeded job that keeps media is claimed for ``Work.MEDIA`` alone, done or not,
        until each file is kept (SPEC 10.4).
        """
        at = _ancient()
        c1 = new_job(at=at, policy=JobPolicy(keep_media=True))
        await store.append(c1)
        state = c1.state
        track = Track("t1", audio_url="https://cdn.example/t1.mp3")
        for command in (
            MarkRequestSent(at),
            RecordTaskCreated("task-media", at),
            RecordObservation(
                Observation("task-media", ProviderStatus.SUCCESS, (track,)), Source.POLL, at
            ),
        ):
            commit = step(state, command)
            await store.append(commit)
            state = commit.state
        assert state.done and state.work is Work.MEDIA
        later = at + timedelta(seconds=1)
        for work in Work:
            got = await store.claim(work, later, owner=_owner(), limit=10_000, lease_s=1)
            assert (c1.job_id in {s.job_id for s in got}) is (work is Work.MEDIA), work
        kept = step(state, KeepMedia("t1", MediaKind.AUDIO, "ab" * 32, 10, "audio/mpeg", later))
        await store.append(kept)
        assert (await store.load(c1.job_id)) == kept.state and kept.state.work is None
        much_later = later + timedelta(seconds=5)
        got = await store.claim(Work.MEDIA, much_later, owner=_owner(), limit=10_000, lease_s=1)
        assert c1.job_id not in {s.job_id for s in got}

    async def test_sends_are_claimed_round_robin_by_user(self, store: EventStore) -> None:
        """Claims of due SEND jobs follow ``fair_order``: a user's burst does not go first,
        whoever claims and in whatever batch sizes; ``queue`` shows the same order.
        """
        rng = random.Random(secrets.randbits(32))
        base = _ancient()
        users = [f"user-{_rand()}" for _ in range(4)]
        # One user with a burst, the others with a few jobs each, arriving in any order.
        counts = [12, 1, 3, 2]
        commits = [
            new_job(at=base + timedelta(seconds=rng.uniform(0, 100)), user_id=user)
            for user, count in zip(users, counts, strict=True)
            for _ in range(count)
        ]
        for c in commits:
            await store.append(c)
        waiting = {c.job_id: Due(c.job_id, c.state.user_id, c.state.created_at) for c in commits}
        served: dict[str, int] = {}
        handouts = 0
        now = base + timedelta(seconds=200)
        while waiting:
            expected = fair_order(waiting.values(), served)
            queued = await store.queue(Work.SEND, now, limit=10_000)
            assert [d.job_id for d in queued if d.job_id in waiting] == [d.job_id for d in expected]
            take = rng.randint(1, 3)
            got = await store.claim(Work.SEND, now, owner=_owner(), limit=take, lease_s=3600)
            assert [s.job_id for s in got] == [d.job_id for d in expected[:take]]
            for state in got:
                served[state.user_id] = handouts = handouts + 1
                del waiting[state.job_id]
            now += timedelta(seconds=rng.uniform(0.001, 5))

    async def test_one_batch_goes_round_robin_like_single_claims(self, store: EventStore) -> None:
        """Two users never served, each with two jobs: one claim of four takes them in turns
        by each user's oldest job (x1, y1, x2, y2), as four claims of one would, and ``queue``
        shows that order; not y2 before x2 because y2 is older.
        """
        base = _ancient()
        x, y = f"user-x-{_rand()}", f"user-y-{_rand()}"
        x1, y1, y2, x2 = (
            new_job(at=base + timedelta(seconds=n), user_id=user)
            for n, user in enumerate((x, y, y, x), start=1)
        )
        for c in (x1, y1, y2, x2):
            await store.append(c)
        now = base + timedelta(seconds=10)
        expected = [c.job_id for c in (x1, y1, x2, y2)]
        queued = await store.queue(Work.SEND, now, limit=10_000)
        assert [d.job_id for d in queued if d.job_id in expected] == expected
        got = await store.claim(Work.SEND, now, owner=_owner(), limit=4, lease_s=3600)
        assert [s.job_id for s in got] == expected

    async def test_a_late_user_waits_at_most_one_job_of_each_other_user(
        self, store: EventStore
    ) -> None:
        """With one user's 20 jobs waiting, a new user's job is claimed within two claims."""
        base = _ancient()
        heavy, light = f"user-{_rand()}", f"user-{_rand()}"
        for i in range(20):
            await store.append(new_job(at=base + timedelta(seconds=i), user_id=heavy))
        now = base + timedelta(seconds=30)
        first = await store.claim(Work.SEND, now, owner=_owner(), limit=1, lease_s=3600)
        assert [s.user_id for s in first] == [heavy]
        late = new_job(at=base + timedelta(seconds=25), user_id=light)
        await store.append(late)
        second = await store.claim(Work.SEND, now, owner=_owner(), limit=1, lease_s=3600)
        assert [s.job_id for s in second] == [late.job_id]

    # --- workers -----------------------------------------------------------------

    async def test_workers_register_heartbeat_and_are_reaped(self, store: EventStore) -> None:
        """A registered worker's heartbeat moves; reaping it forgets it and frees its leases."""
        worker = WorkerInfo(f"w-{_rand()}", "host-a", 4242, _BASE, _BASE)
        await store.register_worker(worker)
        assert worker in await store.workers()
        later = _BASE + timedelta(seconds=5)
        assert await store.heartbeat(worker.worker_id, later)
        (seen,) = [w for w in await store.workers() if w.worker_id == worker.worker_id]
        assert seen.heartbeat_at == later
        c = new_job(at=_ancient())
        await store.append(c)
        now = c.state.created_at + timedelta(seconds=1)
        got = await store.claim(Work.SEND, now, owner=worker.worker_id, limit=10_000, lease_s=600)
        assert c.job_id in {s.job_id for s in got}
        held = await store.leases(worker.worker_id)
        assert [(lease.job_id, lease.work) for lease in held] == [(c.job_id, Work.SEND)]
        assert await store.reap_worker(worker.worker_id) == 1
        assert worker.worker_id not in {w.worker_id for w in await store.workers()}
        assert not await store.heartbeat(worker.worker_id, later)
        assert await store.leases(worker.worker_id) == []
        again = await store.claim(Work.SEND, now, owner=_owner(), limit=10_000, lease_s=600)
        assert c.job_id in {s.job_id for s in again}
        # Registering again (a restart) brings it back.
        await store.register_worker(attrs.evolve(worker, pid=4343, started_at=later))
        assert await store.heartbeat(worker.worker_id, later + timedelta(seconds=5))

    # --- change feed, secrets, orphans --------------------------------------

    async def test_wait_for_change_wakes_on_append(self, store: EventStore) -> None:
        """A waiter wakes when the job's version passes the one it saw."""
        c1 = new_job()
        await store.append(c1)
        waiter = asyncio.create_task(store.wait_for_change(c1.job_id, 1, timeout=10))
        await asyncio.sleep(0.05)
        assert not waiter.done()
        await store.append(step(c1.state, MarkRequestSent(_BASE)))
        assert await asyncio.wait_for(waiter, 5) is True

    async def test_wait_for_change_times_out_or_returns_at_once(self, store: EventStore) -> None:
        """No change means False after the timeout; an already newer job means True."""
        c1 = new_job()
        await store.append(c1)
        assert await store.wait_for_change(c1.job_id, 1, timeout=0.05) is False
        assert await store.wait_for_change(c1.job_id, 0, timeout=5) is True

    async def test_secret_first_writer_wins(self, store: EventStore) -> None:
        """ensure_secret keeps the first value stored under a name."""
        name = f"secret-{_rand()}"
        assert await store.ensure_secret(name, "first-value") == "first-value"
        assert await store.ensure_secret(name, "second-value") == "first-value"

    async def test_orphans_are_kept(self, store: EventStore) -> None:
        """Orphan callbacks are stored and listed newest first."""
        task = _rand(32)
        orphan = OrphanCallback(_BASE, task, '{"x": 1}', "no job with this task id")
        await store.record_orphan(orphan)
        listed = await store.list_orphans(limit=1000)
        assert orphan in listed

    async def test_count_active_and_ping(self, store: EventStore) -> None:
        """count_active counts unfinished jobs (all, or one user's); ping answers."""
        before = await store.count_active()
        user = f"user-{_rand()}"
        c = new_job(user_id=user)
        await store.append(c)
        await store.append(new_job(user_id=user))
        assert await store.count_active() == before + 2
        assert await store.count_active(user) == 2
        await store.append(step(c.state, FailJob("X", "stop", _BASE)))
        assert await store.count_active() == before + 1
        assert await store.count_active(user) == 1
        await store.ping()

    async def test_count_created_since(self, store: EventStore) -> None:
        """count_created counts a user's jobs created at or after a moment, finished or not."""
        user = f"user-{_rand()}"
        for minutes in (0, 30, 59, 61):
            await store.append(new_job(at=_BASE + timedelta(minutes=minutes), user_id=user))
        assert await store.count_created(user, _BASE + timedelta(minutes=30)) == 3
        assert await store.count_created(user, _BASE) == 4
        assert await store.count_created(f"user-{_rand()}", _BASE) == 0

    @settings(
        max_examples=25,
        deadline=None,
        # differing_executors: every backend's subclass runs this same test in one session.
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.differing_executors,
        ],
    )
    @given(log=strategies.job_logs(), cuts=st.lists(st.integers(1, 40)))
    async def test_any_log_round_trips(
        self, store: EventStore, log: list[Event], cuts: list[int]
    ) -> None:
        """Any valid log, appended in any batching, reads back equal and folds to the projection."""
        # Hypothesis shrinks ids towards the same few strings; give each example its own.
        first = log[0]
        assert isinstance(first, JobAccepted)
        job_id = f"job_{int(first.at.timestamp() * 1000)}_{_rand(12)}"
        log = [attrs.evolve(first, job_id=job_id, user_id=f"u-{_rand()}"), *log[1:]]
        state: JobState | None = None
        at = 0
        for cut in [*sorted(set(cuts)), len(log)]:
            batch = log[at:cut]
            if not batch:
                continue
            new = fold(batch, state)
            await store.append(Commit(job_id, state.version if state else 0, tuple(batch), new))
            state, at = new, cut
        read = await store.read(job_id)
        assert [r.event for r in read] == log
        assert [r.version for r in read] == list(range(1, len(log) + 1))
        assert await store.load(job_id) == state == fold(log)
