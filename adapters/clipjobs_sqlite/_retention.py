"""Pruning and paging for :class:`clipjobs.app.retention.RetentionStore` on SQLite.

Each batch is deleted in one write transaction of the store's single writer,
so appends wait for at most a batch. Deleted pages go to SQLite's free list
and are reused by later writes; the file only shrinks after ``VACUUM`` (see
docs/operations.md).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from clipjobs.domain.codec import decode_state
from clipjobs.domain.state import JobState

from ._errors import edge
from ._schema import ts

if TYPE_CHECKING:
    from ._writer import GroupWriter

__all__ = ["SQLiteRetention"]

# done = 1 and no work due: a media copy still waiting keeps its job.
_CANDIDATES = (
    "SELECT state FROM jobs WHERE done = 1 AND updated_at < ? AND work IS NULL"
    " ORDER BY updated_at, job_id LIMIT ?"
)
_STILL_PRUNABLE = (
    "SELECT 1 FROM jobs WHERE job_id = ? AND done = 1 AND work IS NULL AND updated_at < ?"
)


class SQLiteRetention:
    """Mixed into :class:`SQLiteEventStore`."""

    _path: str

    def _write(self) -> GroupWriter:  # pragma: no cover - the store's
        raise NotImplementedError

    async def _fetch(
        self, sql: str, params: tuple[Any, ...]
    ) -> list[sqlite3.Row]:  # pragma: no cover - the store's
        raise NotImplementedError

    async def prune_candidates(self, before: datetime, limit: int) -> list[JobState]:
        rows = await self._fetch(_CANDIDATES, (ts(before), max(0, limit)))
        return [decode_state(r[0]) for r in rows]

    async def delete_jobs(self, job_ids: Sequence[str], before: datetime) -> list[str]:
        writer = self._write()
        ids, cut = list(job_ids), ts(before)

        def run(conn: sqlite3.Connection) -> list[str]:
            deleted: list[str] = []
            for job_id in ids:
                found = conn.execute(_STILL_PRUNABLE, (job_id, cut)).fetchone()
                if found is None:
                    continue
                conn.execute("DELETE FROM events WHERE job_id = ?", (job_id,))
                conn.execute("DELETE FROM leases WHERE job_id = ?", (job_id,))
                conn.execute("DELETE FROM jobs WHERE job_id = ?", (job_id,))
                deleted.append(job_id)
            return deleted

        with edge(self._path):
            result: list[str] = await writer.submit(run)
        return result

    async def page_states(self, after_job_id: str, limit: int) -> list[JobState]:
        rows = await self._fetch(
            "SELECT state FROM jobs WHERE job_id > ? ORDER BY job_id LIMIT ?",
            (after_job_id, max(0, limit)),
        )
        return [decode_state(r[0]) for r in rows]
