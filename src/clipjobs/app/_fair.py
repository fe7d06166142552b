"""The fair queue: which waiting job goes next, so no user's burst starves the others.

Jobs waiting for a Suno call (to be sent, or polled) are served round-robin
by user: each user's oldest job first; among users, the one whose job was
handed out longest ago first (a user never served yet comes first of all),
then the older job. "Longest ago" is by the order of hand-outs (a counter the
store keeps per kind of work), not by clock time, so many hand-outs within one
clock tick still rotate. One user's 3,000 queued jobs therefore delay another
user's single job by at most one slot. Stores implement the same order in
their claim (``EventStoreContract`` checks it against this function).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from .ports import Due

__all__ = ["fair_order"]


def fair_order(due: Iterable[Due], last_served: Mapping[str, int]) -> list[Due]:
    """``due`` in the order the fair queue serves it.

    ``last_served`` maps a user to the number of the last hand-out of one of
    their jobs for this work (higher: more recent; absent: never). A job's key
    is ``(turn, user's last hand-out, user's oldest waiting job, due_at,
    job_id)`` where ``turn`` is how many of the user's waiting jobs are older.
    The users therefore come in the same order in every round, as they would
    if each job were handed out alone: two users never served before take
    turns by their oldest jobs, not by each job's age.
    """
    turns: dict[str, int] = {}
    heads: dict[str, tuple[datetime, str]] = {}
    keyed = []
    for job in sorted(due, key=lambda d: (d.due_at, d.job_id)):
        turn = turns.get(job.user_id, 0)
        turns[job.user_id] = turn + 1
        head = heads.setdefault(job.user_id, (job.due_at, job.job_id))
        served = last_served.get(job.user_id, 0)
        keyed.append(((turn, served, *head, job.due_at, job.job_id), job))
    keyed.sort(key=lambda pair: pair[0])
    return [job for _, job in keyed]
