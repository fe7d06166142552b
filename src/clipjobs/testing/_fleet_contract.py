"""The fleet's part of ``EventStoreContract`` (SPEC 10.3): filters, keyset pages, counts, feed.

Every test makes its own user (and channels), so a shared database full of
other tests' jobs changes nothing: filters are always narrowed to that user,
except where a test checks that a filter without a user still finds its jobs.
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import attrs
import pytest

from ..app.ports import Commit, EventStore
from ..domain._decide import decide
from ..domain._fold import fold
from ..domain.commands import FailJob, MarkRequestSent, StartJob
from ..domain.events import GenerationParams, JobPolicy
from ..domain.fleet import JobFilter, PageKey, matches
from ..domain.stages import Stage
from ..domain.state import JobState

__all__ = ["FleetContract"]

_T0 = datetime(2026, 5, 1, tzinfo=UTC)


def _rand() -> str:
    return secrets.token_hex(4)


def _job(user: str, channel: str, at: datetime) -> Commit:
    command = StartJob(
        job_id=f"job_{int(at.timestamp() * 1000)}_{secrets.token_hex(5)}",
        channel_id=channel,
        user_id=user,
        request_id=f"req_{_rand()}",
        params=GenerationParams(prompt="a song"),
        at=at,
        idempotency_key=None,
        fingerprint="fp",
        policy=JobPolicy(),
        exclusive=False,
    )
    events = decide(command, None)
    return Commit(command.job_id, 0, tuple(events), fold(events))


async def _then(store: EventStore, state: JobState, command: object) -> JobState:
    events = decide(command, state)  # type: ignore[arg-type]
    new = fold(events, state)
    await store.append(Commit(state.job_id, state.version, tuple(events), new))
    return new


async def _fleet(store: EventStore, user: str) -> dict[str, JobState]:
    """Six jobs of ``user`` a minute apart: 2 accepted, 2 sent (one quiet since t0+1m), 2 failed."""
    jobs: dict[str, JobState] = {}
    for i in range(6):
        commit = _job(user, "ch-a" if i % 2 == 0 else "ch-b", _T0 + timedelta(minutes=i))
        await store.append(commit)
        state = commit.state
        if i in (2, 3):
            state = await _then(store, state, MarkRequestSent(state.created_at))
        if i in (4, 5):
            state = await _then(store, state, FailJob("X", "failed", state.created_at))
        jobs[state.job_id] = state
    return jobs


def _ids(states: list[JobState]) -> list[str]:
    return [s.job_id for s in states]


def _newest_first(states: dict[str, JobState], where: JobFilter) -> list[str]:
    chosen = [s for s in states.values() if matches(where, s)]
    chosen.sort(key=lambda s: (s.created_at, s.job_id), reverse=True)
    return _ids(chosen)


class FleetContract:
    """Fleet queries every EventStore answers alike (mixed into ``EventStoreContract``)."""

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.asyncio]

    async def test_fleet_filters_alone_and_combined(self, store: EventStore) -> None:
        """Each filter, alone and with others, selects exactly the jobs ``matches`` does."""
        user = f"fleet-{_rand()}"
        jobs = await _fleet(store, user)
        base = JobFilter(user_id=user)
        cases = [
            base,
            attrs.evolve(base, stages=(Stage.REQUEST_ACCEPTED,)),
            attrs.evolve(base, stages=(Stage.FAILED, Stage.SUNO_REQUEST_SENT)),
            attrs.evolve(base, channel_id="ch-a"),
            attrs.evolve(base, done=True),
            attrs.evolve(base, done=False),
            attrs.evolve(base, stale_before=_T0 + timedelta(minutes=3)),
            attrs.evolve(base, created_after=_T0 + timedelta(minutes=2)),
            attrs.evolve(base, created_before=_T0 + timedelta(minutes=2)),
            attrs.evolve(
                base,
                channel_id="ch-b",
                done=False,
                created_after=_T0 + timedelta(minutes=1),
                created_before=_T0 + timedelta(minutes=5),
            ),
            attrs.evolve(base, stages=(Stage.FAILED,), done=False),
        ]
        for where in cases:
            want = _newest_first(jobs, where)
            assert _ids(await store.find_jobs(where, limit=100)) == want, where
            counts = await store.count_jobs(where)
            assert sum(counts.values()) == len(want), where
            for stage, n in counts.items():
                assert n == sum(1 for j in want if jobs[j].stage is stage)
        assert await store.find_jobs(JobFilter(user_id=f"nobody-{_rand()}")) == []
        assert await store.count_jobs(JobFilter(user_id=f"nobody-{_rand()}")) == {}

    async def test_fleet_without_user_finds_everyones(self, store: EventStore) -> None:
        """A filter with no user (an admin's) finds every user's jobs."""
        channel = f"ch-{_rand()}"
        a, b = _job(f"u-{_rand()}", channel, _T0), _job(f"u-{_rand()}", channel, _T0)
        await store.append(a)
        await store.append(b)
        found = await store.find_jobs(JobFilter(channel_id=channel))
        assert set(_ids(found)) == {a.job_id, b.job_id}

    async def test_fleet_pages_have_no_gaps_or_duplicates_while_jobs_arrive(
        self, store: EventStore
    ) -> None:
        """Keyset pages over 120 jobs (some at the same instant) while newer jobs arrive."""
        user = f"pages-{_rand()}"
        first = [_job(user, "ch", _T0 + timedelta(seconds=i // 3)) for i in range(120)]
        await asyncio.gather(*(store.append(c) for c in first))
        where = JobFilter(user_id=user)
        seen: list[str] = []
        after: PageKey | None = None
        arrived = 0
        while True:
            page = await store.find_jobs(where, after=after, limit=7)
            if not page:
                break
            seen.extend(_ids(page))
            after = PageKey.of(page[-1])
            # Newer jobs arrive between pages: they must not shift what is still to come.
            await store.append(_job(user, "ch", _T0 + timedelta(hours=1, seconds=arrived)))
            arrived += 1
        want = sorted(first, key=lambda c: (c.state.created_at, c.job_id), reverse=True)
        assert seen == [c.job_id for c in want]

    async def test_change_feed_sees_every_job(self, store: EventStore) -> None:
        """A feed opened before commits reports every job they changed, each once."""
        with store.changes() as feed:
            a, b = _job(f"u-{_rand()}", "ch", _T0), _job(f"u-{_rand()}", "ch", _T0)
            await store.append(a)
            await store.append(b)
            await _then(store, a.state, MarkRequestSent(_T0))
            seen: set[str] = set()
            for _ in range(50):
                ids, _missed = await feed.next(5.0)
                seen.update(ids)
                if {a.job_id, b.job_id} <= seen:
                    break
            assert {a.job_id, b.job_id} <= seen

    async def test_change_feed_times_out_quietly(self, store: EventStore) -> None:
        """With nothing changed a feed answers empty after its timeout."""
        with store.changes() as feed:
            ids, missed = await feed.next(0.01)
        # Other tests may share the database; only the shape is certain.
        assert isinstance(ids, list) and isinstance(missed, bool)
