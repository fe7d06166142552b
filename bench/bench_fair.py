"""The fair queue (issue 23): a burst of one user against 50 users with one job each.

One user has ``--heavy`` (10,000) jobs waiting at the start; ``--light`` (50) other users
each start one job at a random moment of the first ``--spread-s`` (60) seconds. Suno call
slots come at the default budget's pace, 20 per 10 s (one every 0.5 s), and each slot takes
the job at the head of the queue, as the sender does (one claim per turn). The time is
virtual: the figures are the order's, not this machine's.

Reported for the 50: "start of wait → Suno call slot" (p50, p99, max), under the fair order
(``clipjobs.fair_order``, with the memory of who was served that the stores keep) against the
baseline, plain oldest first: the same arrivals with every job under one user id (the fair
order then is oldest first), in the same run. The ratio is baseline / fair.

Each slot asks ``fair_order`` for the head of the queue given every user's oldest waiting job:
the head of the whole queue is always one of those (a user's first job comes in round 0,
before any second job), so 10,000 slots cost 10,000 small calls, not a sort of 10,000 jobs
each. Before the figures, a smaller burst goes through ``InMemoryEventStore.claim`` (one job
per claim, as the sender takes them) and must give the same order, or the bench fails.

Run: python bench/bench_fair.py [--heavy 10000] [--light 50] [--quick] [--json PATH]
"""

from __future__ import annotations

import asyncio
import math
import random
import sys
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import bench_parser, print_table, write_json  # noqa: E402 -- after the path insert

from clipjobs import InMemoryEventStore, fair_order  # noqa: E402
from clipjobs.app.ports import Due  # noqa: E402
from clipjobs.domain.stages import Work  # noqa: E402
from clipjobs.testing import new_job  # noqa: E402

#: The default budget: 20 calls per 10 s, paced.
SLOTS_PER_WINDOW = 20
WINDOW_S = 10.0
START = datetime(2026, 1, 1, tzinfo=UTC)


def arrivals(heavy: int, light: int, spread_s: float, seed: int) -> list[tuple[float, str, str]]:
    """(seconds after the start, job id, user): the heavy burst at once, then the light users."""
    jobs = [(i * 1e-6, f"heavy-{i:06d}", "heavy") for i in range(heavy)]
    rng = random.Random(seed)
    jobs += [(rng.uniform(0, spread_s), f"light-{n:03d}", f"user-{n:03d}") for n in range(light)]
    jobs.sort()
    return jobs


def simulate(
    jobs: Sequence[tuple[float, str, str]], *, one_user: bool, order: list[str] | None = None
) -> dict[str, float]:
    """Serve ``jobs`` one per slot in the queue's order until every light job has its slot;
    each light job's wait in seconds. ``one_user``: every job under one user id (the baseline).
    ``order``: if given, gets the job of each slot.
    """
    gap = WINDOW_S / SLOTS_PER_WINDOW
    pending = deque(jobs)
    waiting: dict[str, deque[Due]] = {}
    served: dict[str, int] = {}
    started = {job: at for at, job, _ in jobs}
    light_left = sum(1 for _, job, _ in jobs if job.startswith("light"))
    waits: dict[str, float] = {}
    handouts = 0
    slot = 0
    while light_left:
        now = slot * gap
        slot += 1
        while pending and pending[0][0] <= now:
            at, job, user = pending.popleft()
            owner = "everyone" if one_user else user
            waiting.setdefault(owner, deque()).append(
                Due(job, owner, START + timedelta(seconds=at))
            )
        heads = [queue[0] for queue in waiting.values() if queue]
        if not heads:
            continue
        head = fair_order(heads, served)[0]
        waiting[head.user_id].popleft()
        handouts += 1
        served[head.user_id] = handouts
        if order is not None:
            order.append(head.job_id)
        if head.job_id.startswith("light"):
            waits[head.job_id] = now - started[head.job_id]
            light_left -= 1
    return waits


async def store_order(jobs: Sequence[tuple[float, str, str]], slots: int) -> list[str]:
    """The same arrivals and slots through ``InMemoryEventStore.claim`` (one job per claim):
    the check that the simulation's queue is the stores'.
    """
    store = InMemoryEventStore()
    names: dict[str, str] = {}
    pending = deque(jobs)
    order: list[str] = []
    gap = WINDOW_S / SLOTS_PER_WINDOW
    for slot in range(slots):
        now = START + timedelta(seconds=slot * gap)
        while pending and START + timedelta(seconds=pending[0][0]) <= now:
            at, job, user = pending.popleft()
            commit = new_job(at=START + timedelta(seconds=at), user_id=user)
            names[commit.job_id] = job
            await store.append(commit)
        got = await store.claim(Work.SEND, now, owner="bench", limit=1, lease_s=86_400)
        order += [names[s.job_id] for s in got]
    return order


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile (p99 of 50 values: the 50th smallest)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def summary(waits: dict[str, float]) -> dict[str, float]:
    values = list(waits.values())
    return {
        "p50_s": percentile(values, 50),
        "p99_s": percentile(values, 99),
        "max_s": max(values),
    }


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--heavy", type=int, default=10_000, help="the burst of one user")
    parser.add_argument("--light", type=int, default=50, help="users with one job each")
    parser.add_argument("--spread-s", type=float, default=60.0, help="when the light users come")
    parser.add_argument("--seed", type=int, default=23)
    args = parser.parse_args()
    if args.quick:
        args.heavy, args.light = 500, 10

    jobs = arrivals(args.heavy, args.light, args.spread_s, args.seed)
    # The check first: on a smaller burst, the store's own claims give the simulation's order.
    small = arrivals(min(args.heavy, 300), args.light, args.spread_s, args.seed)
    simulated: list[str] = []
    simulate(small, one_user=False, order=simulated)
    claimed = asyncio.run(store_order(small, len(simulated)))
    if claimed != simulated:
        sys.exit("the simulation's order is not the in-memory store's: the figures would lie")
    fair = summary(simulate(jobs, one_user=False))
    oldest = summary(simulate(jobs, one_user=True))
    ratio = oldest["p99_s"] / fair["p99_s"]

    note = (
        f"{args.heavy} jobs of one user waiting, {args.light} users with one job each arriving"
        f" over {args.spread_s:g} s; {SLOTS_PER_WINDOW} Suno slots per {WINDOW_S:g} s (paced),"
        " virtual time; start of wait -> Suno call slot"
    )
    rows: list[tuple[str, ...]] = [("order", "p50", "p99", "max")]
    for name, figures in (("fair (round-robin by user)", fair), ("oldest first", oldest)):
        rows.append((name, *(f"{figures[k]:.1f} s" for k in ("p50_s", "p99_s", "max_s"))))
    print_table("Fair queue", [note], rows)
    print(f"p99 oldest first / fair: {ratio:.0f}x")
    print(
        f"(checked: InMemoryEventStore.claim gave the same order for {len(simulated)} slots"
        f" of a {min(args.heavy, 300)}-job burst)"
    )
    out: dict[str, Any] = {
        "sizes": {"heavy": args.heavy, "light": args.light, "spread_s": args.spread_s},
        "fair": fair,
        "oldest_first": oldest,
        "p99_ratio": ratio,
    }
    write_json(args.json, out)


if __name__ == "__main__":
    main()
