"""``clipjobs jobs``: the fleet list (SPEC 10.3) as a table, or one JSON line per job."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from clipjobs.domain.stages import Stage

from ._client import _command, _json_line, _session, client_parser
from ._client_http import JobsApi

__all__ = ["register_jobs"]

_HEADERS = {
    "en": ("JOB", "STAGE", "AGE", "HEARTBEAT", "CHANNEL", "USER", "ERROR"),
    "ru": ("ЗАДАЧА", "ЭТАП", "ВОЗРАСТ", "ПУЛЬС", "КАНАЛ", "ПОЛЬЗОВАТЕЛЬ", "ОШИБКА"),
}
_STALE = {"en": "STALE", "ru": "ЗАВИС"}
_NONE = {"en": "no jobs match", "ru": "подходящих задач нет"}


def _limit(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 200:
        raise argparse.ArgumentTypeError("must be a whole number from 1 to 200")
    return int(value)


def _stage(value: str) -> str:
    names = {s.value for s in Stage}
    # STAGE_90 or 90 for short.
    for name in names:
        if value in (name, name[:8], name[6:8]):
            return name
    raise argparse.ArgumentTypeError(f"unknown stage {value!r}; one of {', '.join(sorted(names))}")


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172_800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def _row(job: dict[str, Any], lang: str, now: datetime) -> list[str]:
    try:
        created = datetime.fromisoformat(str(job.get("createdAt")))
        age = _ago((now - created).total_seconds())
    except ValueError:
        age = "?"
    beat = job.get("heartbeat") or {}
    heartbeat = _ago(float(beat.get("secondsSinceUpdate") or 0))
    if beat.get("isStale"):
        heartbeat += f" {_STALE[lang]}"
    error = str(job.get("errorCode") or job.get("error") or "")
    return [
        str(job.get("jobId")),
        str(job.get("stage")),
        age,
        heartbeat,
        str(job.get("channelId")),
        str(job.get("userId") or ""),
        error[:60],
    ]


def jobs_table(jobs: list[dict[str, Any]], lang: str, now: datetime) -> str:
    """Columns padded to their widest cell, a header, no borders."""
    if not jobs:
        return _NONE[lang] + "\n"
    table = [list(_HEADERS[lang]), *(_row(j, lang, now) for j in jobs)]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    lines = []
    for row in table:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines) + "\n"


async def _jobs(args: argparse.Namespace, url: str, token: str) -> int:
    query: list[tuple[str, str]] = [("stage", s) for s in args.stage or ()]
    if args.stale:
        query.append(("stale", "true"))
    if args.channel:
        query.append(("channelId", args.channel))
    if args.user:
        query.append(("userId", args.user))
    if args.done is not None:
        query.append(("done", args.done))
    query.append(("limit", str(args.limit)))
    async with _session() as session:
        api = JobsApi(session, url, token, args.lang)
        _, body = await api._json("GET", f"{api.base_url}/api/music-clips/jobs?{urlencode(query)}")
    jobs = [j for j in (body or {}).get("jobs") or [] if isinstance(j, dict)]
    if args.json:
        for job in jobs:
            _json_line(job)
    else:
        sys.stdout.write(jobs_table(jobs, args.lang, datetime.now(UTC)))
        sys.stdout.flush()
    return 0


def register_jobs(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``clipjobs jobs`` to the ``clipjobs`` command's subparsers."""
    jobs_p = client_parser(
        sub,
        "jobs",
        summary="list jobs: yours, or every job with an admin token",
        description=(
            "The newest jobs you may see (an admin token sees everyone's), filtered;"
            " stale ones are marked."
        ),
        epilog="Exit codes: 0 listed, 2 usage, 4 server unreachable or request refused.",
    )
    jobs_p.add_argument(
        "--stage", action="append", type=_stage, metavar="S", help="only this stage (repeat)"
    )
    jobs_p.add_argument("--stale", action="store_true", help="only unfinished jobs gone quiet")
    jobs_p.add_argument("--channel", metavar="C", help="only this channel")
    jobs_p.add_argument("--user", metavar="U", help="only this user's jobs (admins)")
    jobs_p.add_argument(
        "--done", choices=("true", "false"), default=None, help="only finished (or unfinished)"
    )
    jobs_p.add_argument(
        "--limit", type=_limit, default=50, metavar="N", help="at most N jobs (1-200, default 50)"
    )
    jobs_p.set_defaults(func=_command(_jobs))
