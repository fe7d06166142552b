"""The fleet's queries (SPEC 10.3) as SQLite SQL: a ``JobFilter`` becomes a WHERE clause."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from clipjobs.domain.fleet import JobFilter, PageKey

from ._schema import ts

__all__ = ["count_sql", "find_sql"]


def _where(where: JobFilter, after: PageKey | None) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if where.stages:
        clauses.append(f"stage IN ({', '.join('?' for _ in where.stages)})")
        params.extend(stage.value for stage in where.stages)
    # The plain comparisons: a condition for each filter that is set, times stored as text.
    for condition, value in (
        ("channel_id = ?", where.channel_id),
        ("user_id = ?", where.user_id),
        ("done = ?", None if where.done is None else int(where.done)),
        ("done = 0 AND updated_at < ?", where.stale_before),
        ("created_at >= ?", where.created_after),
        ("created_at < ?", where.created_before),
    ):
        if value is not None:
            clauses.append(condition)
            params.append(ts(value) if isinstance(value, datetime) else value)
    if after is not None:
        # Row values compare in one index range (SQLite 3.15+).
        clauses.append("(created_at, job_id) < (?, ?)")
        params.extend((ts(after.created_at), after.job_id))
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def find_sql(where: JobFilter, after: PageKey | None, limit: int) -> tuple[str, tuple[Any, ...]]:
    clause, params = _where(where, after)
    sql = f"SELECT state FROM jobs{clause} ORDER BY created_at DESC, job_id DESC LIMIT ?"  # noqa: S608 - placeholders only
    return sql, (*params, max(0, limit))


def count_sql(where: JobFilter) -> tuple[str, tuple[Any, ...]]:
    clause, params = _where(where, None)
    return f"SELECT stage, count(*) FROM jobs{clause} GROUP BY stage", tuple(params)  # noqa: S608 - placeholders only
