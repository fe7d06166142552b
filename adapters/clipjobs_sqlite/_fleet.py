"""The fleet's queries (SPEC 10.3) as SQLite SQL: a ``JobFilter`` becomes a WHERE clause."""

from __future__ import annotations

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
    if where.channel_id is not None:
        clauses.append("channel_id = ?")
        params.append(where.channel_id)
    if where.user_id is not None:
        clauses.append("user_id = ?")
        params.append(where.user_id)
    if where.done is not None:
        clauses.append("done = ?")
        params.append(int(where.done))
    if where.stale_before is not None:
        clauses.append("done = 0 AND updated_at < ?")
        params.append(ts(where.stale_before))
    if where.created_after is not None:
        clauses.append("created_at >= ?")
        params.append(ts(where.created_after))
    if where.created_before is not None:
        clauses.append("created_at < ?")
        params.append(ts(where.created_before))
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
