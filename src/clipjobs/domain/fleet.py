"""The fleet (SPEC 10.3): every job at once, as filters over the projection rows.

Pure: a :class:`JobFilter` says which jobs, a :class:`PageKey` where a page
of the newest-first list starts, and :func:`matches` is the one rule the
in-memory store and the live feed apply (the SQL stores say the same in SQL).
Who may see what is :func:`visible_to`: a user's filter is pinned to their
own jobs, an admin's is left as asked.
"""

from __future__ import annotations

from datetime import datetime

import attrs
from attrs import frozen

from .stages import Stage
from .state import JobState

__all__ = ["BULK_LIMIT", "MAX_PAGE", "JobFilter", "PageKey", "before", "matches", "visible_to"]

#: The most jobs one list page holds.
MAX_PAGE = 200
#: The most jobs one bulk action touches; it says when more matched.
BULK_LIMIT = 1000


@frozen(kw_only=True)
class JobFilter:
    """Which jobs: every field set must hold (an empty filter matches every job).

    ``stale_before``: only jobs not done whose last event is older than this
    (the caller computes it from ``now - stale_after_s``). ``created_after`` is
    inclusive and ``created_before`` exclusive, so adjacent windows never
    count a job twice.
    """

    stages: tuple[Stage, ...] = ()
    channel_id: str | None = None
    user_id: str | None = None
    done: bool | None = None
    stale_before: datetime | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


@frozen
class PageKey:
    """Where a newest-first page continues: jobs strictly older than this one.

    Keyset order is ``(created_at, job_id)`` descending, so jobs created while
    someone pages never shift the pages still to come.
    """

    created_at: datetime
    job_id: str

    @classmethod
    def of(cls, state: JobState) -> PageKey:
        return cls(state.created_at, state.job_id)


def matches(where: JobFilter, state: JobState) -> bool:
    """True when ``state`` is one of the jobs ``where`` selects."""
    if where.stages and state.stage not in where.stages:
        return False
    if where.channel_id is not None and state.channel_id != where.channel_id:
        return False
    if where.user_id is not None and state.user_id != where.user_id:
        return False
    if where.done is not None and state.done != where.done:
        return False
    if where.stale_before is not None and (state.done or state.updated_at >= where.stale_before):
        return False
    if where.created_after is not None and state.created_at < where.created_after:
        return False
    return not (where.created_before is not None and state.created_at >= where.created_before)


def before(key: PageKey | None, state: JobState) -> bool:
    """True when ``state`` comes after ``key`` in the newest-first order."""
    return key is None or (state.created_at, state.job_id) < (key.created_at, key.job_id)


def visible_to(where: JobFilter, user_id: str, *, admin: bool) -> JobFilter:
    """The filter as the caller may apply it: a user only ever sees their own jobs."""
    if admin:
        return where
    return attrs.evolve(where, user_id=user_id)
