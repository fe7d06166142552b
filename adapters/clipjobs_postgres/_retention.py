"""Pruning and paging for :class:`clipjobs.app.retention.RetentionStore` on PostgreSQL.

A batch is one transaction that locks its jobs' rows (``FOR UPDATE``), checks
again that each is finished and waits for nothing, and deletes its events,
leases and row. Autovacuum reclaims the space for reuse.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from clipjobs.domain.codec import decode_state
from clipjobs.domain.state import JobState

from ._schema import render

__all__ = ["PostgresRetention"]

_CANDIDATES = """
    SELECT state FROM {s}.jobs
    WHERE done AND updated_at < $1 AND work IS NULL
    ORDER BY updated_at, job_id LIMIT $2
"""
_DELETE = """
    WITH gone AS (
        SELECT job_id FROM {s}.jobs
        WHERE job_id = ANY($1::text[]) AND done AND work IS NULL AND updated_at < $2
        FOR UPDATE
    ), e AS (
        DELETE FROM {s}.events WHERE job_id IN (SELECT job_id FROM gone)
    ), l AS (
        DELETE FROM {s}.leases WHERE job_id IN (SELECT job_id FROM gone)
    )
    DELETE FROM {s}.jobs WHERE job_id IN (SELECT job_id FROM gone) RETURNING job_id
"""
_PAGE = "SELECT state FROM {s}.jobs WHERE job_id > $1 ORDER BY job_id LIMIT $2"


class PostgresRetention:
    """Mixed into :class:`PostgresEventStore`."""

    _schema: str

    def _connection(self) -> contextlib.AbstractAsyncContextManager[Any]:  # pragma: no cover
        raise NotImplementedError

    async def prune_candidates(self, before: datetime, limit: int) -> list[JobState]:
        async with self._connection() as conn:
            rows = await conn.fetch(render(_CANDIDATES, self._schema), before, max(0, limit))
        return [decode_state(r[0]) for r in rows]

    async def delete_jobs(self, job_ids: Sequence[str], before: datetime) -> list[str]:
        async with self._connection() as conn, conn.transaction():
            rows = await conn.fetch(render(_DELETE, self._schema), list(job_ids), before)
        return [r[0] for r in rows]

    async def page_states(self, after_job_id: str, limit: int) -> list[JobState]:
        async with self._connection() as conn:
            rows = await conn.fetch(render(_PAGE, self._schema), after_job_id, max(0, limit))
        return [decode_state(r[0]) for r in rows]
