"""The fleet's queries (SPEC 10.3) as PostgreSQL SQL: a ``JobFilter`` becomes a WHERE clause."""

from __future__ import annotations

from typing import Any

from clipjobs.domain.fleet import JobFilter, PageKey

__all__ = ["count_sql", "find_sql"]


def _where(where: JobFilter, after: PageKey | None) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []

    def arg(value: Any) -> str:
        params.append(value)
        return f"${len(params)}"

    if where.stages:
        clauses.append(f"stage = ANY({arg([s.value for s in where.stages])}::text[])")
    if where.channel_id is not None:
        clauses.append(f"channel_id = {arg(where.channel_id)}")
    if where.user_id is not None:
        clauses.append(f"user_id = {arg(where.user_id)}")
    if where.done is not None:
        clauses.append(f"done = {arg(where.done)}")
    if where.stale_before is not None:
        clauses.append(f"NOT done AND updated_at < {arg(where.stale_before)}")
    if where.created_after is not None:
        clauses.append(f"created_at >= {arg(where.created_after)}")
    if where.created_before is not None:
        clauses.append(f"created_at < {arg(where.created_before)}")
    if after is not None:
        clauses.append(f"(created_at, job_id) < ({arg(after.created_at)}, {arg(after.job_id)})")
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def find_sql(
    schema: str, where: JobFilter, after: PageKey | None, limit: int
) -> tuple[str, list[Any]]:
    """``schema`` is the quoted schema name."""
    clause, params = _where(where, after)
    params.append(max(0, limit))
    sql = (
        f"SELECT state FROM {schema}.jobs{clause}"  # noqa: S608 - placeholders only
        f" ORDER BY created_at DESC, job_id DESC LIMIT ${len(params)}"
    )
    return sql, params


def count_sql(schema: str, where: JobFilter) -> tuple[str, list[Any]]:
    clause, params = _where(where, None)
    return f"SELECT stage, count(*) AS n FROM {schema}.jobs{clause} GROUP BY stage", params  # noqa: S608 - placeholders only
