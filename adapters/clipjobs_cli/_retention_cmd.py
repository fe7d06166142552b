"""``clipjobs prune [--dry-run]`` and ``clipjobs export [--before DATE] [--channel C]``.

Both read the store ``CLIPJOBS_DB`` names (the same settings as ``serve``).

``export`` writes one JSON object per line to stdout, one per job, oldest job
id first, streamed page by page (memory stays flat whatever the number of jobs):
``{"format": "clipjobs-export-1", "job": <the GET body>, "events": [<history
entries>]}``; see docs/operations.md. ``prune`` deletes finished jobs older than
``CLIPJOBS_RETENTION_DAYS`` (or ``--days``) in batches, with their kept files no
other job names; ``--dry-run`` says what it would delete and deletes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO, TypeVar

from clipjobs.app.config import Settings
from clipjobs.app.retention import RetentionStore, prune_once
from clipjobs.domain.errors import ClipjobsError, ConfigError
from clipjobs_aiohttp._views import event_view, job_body
from clipjobs_ffmpeg import KeptFiles

from ._exit import EXIT_ERROR, EXIT_OK, EXIT_USAGE
from ._serve import open_store

__all__ = ["EXPORT_FORMAT", "export_jobs", "register"]

EXPORT_FORMAT = "clipjobs-export-1"
_PAGE = 200

T = TypeVar("T")


def _fail(message: str, code: int) -> int:
    print(f"clipjobs: error: {message}", file=sys.stderr, flush=True)
    return code


def _settings() -> Settings:
    return Settings.from_env(dict(os.environ))


def _date(text: str) -> datetime:
    """``YYYY-MM-DD`` (midnight UTC) or an ISO 8601 time (UTC unless it says otherwise)."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date: use YYYY-MM-DD or an ISO 8601 time"
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


async def _store(settings: Settings) -> Any:
    store = await open_store(settings)
    if not isinstance(store, RetentionStore):  # pragma: no cover - both stores are
        await store.aclose()
        raise ConfigError("this store cannot prune or export")
    return store


async def export_jobs(
    store: Any,
    out: TextIO,
    *,
    before: datetime | None = None,
    channel: str | None = None,
    stale_after_s: float = 60.0,
) -> int:
    """Write each job (created before ``before``, on ``channel``) as one JSON line; how many."""
    count = 0
    after = ""
    now = datetime.now(UTC)
    while states := await store.page_states(after, _PAGE):
        after = states[-1].job_id
        for state in states:
            if before is not None and state.created_at >= before:
                continue
            if channel is not None and state.channel_id != channel:
                continue
            body = job_body(
                state, lang="en", now=now, stale_after_s=stale_after_s, request_id="export"
            )
            events = [event_view(e) for e in await store.read(state.job_id)]
            line = {"format": EXPORT_FORMAT, "job": body, "events": events}
            out.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")
            count += 1
        out.flush()
    return count


def _store_command(
    work: Callable[[argparse.Namespace, Settings], int],
) -> Callable[[argparse.Namespace], int]:
    """A command on the store the settings name: bad settings exit 2 and a store that fails
    exits 4, each said in one line.
    """

    def run(args: argparse.Namespace) -> int:
        try:
            return work(args, _settings())
        except ConfigError as exc:
            return _fail(str(exc), EXIT_USAGE)
        except ClipjobsError as exc:
            return _fail(str(exc), EXIT_ERROR)

    return run


def _on_store(settings: Settings, work: Callable[[Any], Awaitable[T]]) -> T:
    """``work(store)`` on a store opened for it and closed after."""

    async def run() -> T:
        store = await _store(settings)
        try:
            return await work(store)
        finally:
            await store.aclose()

    return asyncio.run(run())


@_store_command
def _export(args: argparse.Namespace, settings: Settings) -> int:
    count = _on_store(
        settings,
        lambda store: export_jobs(
            store,
            sys.stdout,
            before=args.before,
            channel=args.channel,
            stale_after_s=settings.stale_after_s,
        ),
    )
    print(f"clipjobs: exported {count} jobs", file=sys.stderr, flush=True)
    return EXIT_OK


@_store_command
def _prune(args: argparse.Namespace, settings: Settings) -> int:
    days = args.days if args.days is not None else settings.retention_days
    if days <= 0:
        return _fail(
            "nothing to prune: CLIPJOBS_RETENTION_DAYS is 0 (keep forever); set it or pass --days",
            EXIT_USAGE,
        )

    async def prune(store: Any) -> list[str]:
        lines = []
        retention = timedelta(days=days)
        now = datetime.now(UTC)
        media = KeptFiles(settings.media_dir)
        dry = await prune_once(store, now, retention, media=media, dry_run=True)
        lines.append(
            f"would delete {dry.jobs} finished jobs older than {days:g} days"
            + (f" ({dry.oldest:%Y-%m-%d} … {dry.newest:%Y-%m-%d})" if dry.oldest else "")
            + f" and {dry.files} kept files no other job names"
        )
        if not args.dry_run and dry.jobs:
            done = await prune_once(store, now, retention, media=media)
            lines.append(
                f"deleted {done.jobs} jobs and {done.files} kept files ({done.bytes} bytes)"
            )
        return lines

    for line in _on_store(settings, prune):
        print(f"clipjobs: {line}", flush=True)
    return EXIT_OK


def _days(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days") from None
    if not 0 < value <= 36500:
        raise argparse.ArgumentTypeError("--days must be between 0 and 36500")
    return value


def register(sub: Any) -> None:
    """Add ``prune`` and ``export`` to the ``clipjobs`` command."""
    prune_p = sub.add_parser(
        "prune",
        help="delete finished jobs older than CLIPJOBS_RETENTION_DAYS, with their kept files",
        description="Says what it would delete, then deletes it (not with --dry-run).",
    )
    prune_p.add_argument("--dry-run", action="store_true", help="say what would go; delete nothing")
    prune_p.add_argument("--days", type=_days, default=None, help="instead of the setting")
    prune_p.set_defaults(func=_prune)

    export_p = sub.add_parser(
        "export",
        help="write every job as one JSON line (its GET body and its full log) to stdout",
    )
    export_p.add_argument("--before", type=_date, default=None, help="jobs created before DATE")
    export_p.add_argument("--channel", default=None, help="only this channel's jobs")
    export_p.set_defaults(func=_export)
