"""The fair queue (issue 23) as a property: whatever arrives, whoever claims, in any batches.

Random programs of arrivals (a user's burst of jobs, any user, any time) and claims (of 1 to
5 jobs) run against the in-memory store's ``claim`` and against ``fair_order`` with the
memory a store keeps (the number of each user's last hand-out). On the hand-outs:

- each user's jobs go in the order they arrived;
- while a job is its user's oldest waiting one, at most one job of each other user is
  handed out before it, however many the others have queued;
- no job waits forever: every job is handed out, after at most
  ``(ahead + 1) * (users - 1) + ahead`` others, where ``ahead`` is the number of its own
  user's jobs waiting when it arrived.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from clipjobs import InMemoryEventStore, fair_order
from clipjobs.app.ports import Due
from clipjobs.domain.stages import Work
from clipjobs.testing import new_job

BASE = datetime(2026, 3, 1, tzinfo=UTC)
USERS = [f"user-{n}" for n in range(5)]

#: ("arrive", user, how many) or ("claim", how many).
Step = tuple[str, int, int]
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("arrive"), st.integers(0, len(USERS) - 1), st.integers(1, 12)),
        st.tuples(st.just("claim"), st.just(0), st.integers(1, 5)),
    ),
    min_size=1,
    max_size=40,
)

#: The timeline: ("arrive" | "serve", job id, user), in the order it happened.
Timeline = list[tuple[str, str, str]]


async def run_store(steps: Sequence[Step]) -> Timeline:
    """The program against ``InMemoryEventStore.claim``; at the end, claims until none wait."""
    store = InMemoryEventStore()
    timeline: Timeline = []
    now = BASE
    for kind, user, count in steps:
        now += timedelta(seconds=1)
        if kind == "arrive":
            for _ in range(count):
                now += timedelta(milliseconds=1)
                commit = new_job(at=now, user_id=USERS[user])
                await store.append(commit)
                timeline.append(("arrive", commit.job_id, USERS[user]))
        else:
            await claim(store, now, count, timeline)
    while await claim(store, now + timedelta(seconds=1), 5, timeline):
        pass
    return timeline


async def claim(store: InMemoryEventStore, now: datetime, limit: int, timeline: Timeline) -> int:
    got = await store.claim(Work.SEND, now, owner="prop", limit=limit, lease_s=86_400)
    timeline.extend(("serve", s.job_id, s.user_id) for s in got)
    return len(got)


def run_model(steps: Sequence[Step]) -> Timeline:
    """The same program against ``fair_order`` alone, keeping the hand-out memory here."""
    waiting: dict[str, Due] = {}
    served: dict[str, int] = {}
    handouts = 0
    timeline: Timeline = []
    now = BASE
    seq = 0

    def take(limit: int) -> int:
        nonlocal handouts
        chosen = fair_order(waiting.values(), served)[:limit]
        for due in chosen:
            handouts += 1
            served[due.user_id] = handouts
            del waiting[due.job_id]
            timeline.append(("serve", due.job_id, due.user_id))
        return len(chosen)

    for kind, user, count in steps:
        now += timedelta(seconds=1)
        if kind == "arrive":
            for _ in range(count):
                now += timedelta(milliseconds=1)
                seq += 1
                job = f"job-{seq:05d}"
                waiting[job] = Due(job, USERS[user], now)
                timeline.append(("arrive", job, USERS[user]))
        else:
            take(count)
    while take(5):
        pass
    return timeline


def check_fair(timeline: Timeline) -> None:
    arrived = [(job, user) for kind, job, user in timeline if kind == "arrive"]
    serves = [(job, user) for kind, job, user in timeline if kind == "serve"]
    position = {(kind, job): i for i, (kind, job, _) in enumerate(timeline)}

    # Nobody waits forever: every job is handed out, once.
    assert sorted(j for j, _ in serves) == sorted(j for j, _ in arrived)
    assert len(serves) == len(set(serves))

    # Each user's own order.
    for user in USERS:
        mine = [j for j, u in arrived if u == user]
        assert [j for j, u in serves if u == user] == mine, user

    users = len({u for _, u in arrived})
    previous: dict[str, str] = {}  # the user's job arrived just before
    for job, user in arrived:
        before = previous.get(user)
        previous[user] = job
        # The job is its user's oldest waiting one from when it arrived or the one before it
        # was handed out, whichever came later, until it is handed out itself.
        head = position[("arrive", job)]
        if before is not None:
            head = max(head, position[("serve", before)])
        done = position[("serve", job)]
        others = Counter(u for kind, _, u in timeline[head + 1 : done] if kind == "serve")
        assert all(n <= 1 for n in others.values()), (job, user, others)
        assert user not in others

        # A bound on the whole wait, whatever the others queued.
        arrived_at = position[("arrive", job)]
        ahead = sum(
            1
            for j, u in arrived
            if u == user and position[("arrive", j)] < arrived_at < position[("serve", j)]
        )
        waited = sum(1 for kind, _, _ in timeline[arrived_at + 1 : done] if kind == "serve")
        assert waited <= (ahead + 1) * (users - 1) + ahead, (job, ahead, waited)


@settings(max_examples=300, deadline=None)
@given(STEPS)
def test_the_store_claims_fairly(steps: list[Step]) -> None:
    check_fair(asyncio.run(run_store(steps)))


@settings(max_examples=300, deadline=None)
@given(STEPS)
def test_fair_order_serves_fairly(steps: list[Step]) -> None:
    check_fair(run_model(steps))


def test_one_job_waits_one_turn_per_other_user_behind_any_burst() -> None:
    """The issue's case by hand: 1,000 of A's jobs and two more users' burst of 50; C's one
    job, arriving last, is handed out within three hand-outs (one each of A and B, then C).
    """
    steps: list[Step] = [("arrive", 0, 1000), ("arrive", 1, 50), ("claim", 0, 3)]
    steps += [("arrive", 2, 1), ("claim", 0, 1), ("claim", 0, 1), ("claim", 0, 1)]
    timeline = run_model(steps)
    serves = [u for kind, _, u in timeline if kind == "serve"]
    assert serves[3:6].count("user-2") == 1
    check_fair(timeline)
