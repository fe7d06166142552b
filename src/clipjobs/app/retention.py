"""Retention (SPEC 10.4): finished jobs older than ``CLIPJOBS_RETENTION_DAYS`` are pruned.

:func:`prune_once` deletes, in small batches, finished jobs whose last event is
older than the cut-off and that wait for no work (a media copy still due keeps
its job): their log, their projection row (and with it their idempotency key)
and their leases, each batch in one transaction of its own so readers wait for
no more than a batch. Kept files no remaining job names are then removed by the
:class:`MediaSweeper`. A job that is not finished is never touched: the stores
check it again inside the deleting transaction.

:class:`Pruner` runs :func:`prune_once` in the background every ``every_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol, Self, runtime_checkable

from attrs import define, frozen

from ..domain.state import JobState
from .logs import pipeline_log
from .ports import Clock

__all__ = [
    "MediaSweeper",
    "PruneReport",
    "Pruner",
    "RetentionStore",
    "prune_once",
]


@runtime_checkable
class RetentionStore(Protocol):
    """What pruning and export need of a store, beyond :class:`~clipjobs.app.ports.EventStore`."""

    async def prune_candidates(self, before: datetime, limit: int) -> list[JobState]:
        """Finished jobs whose last event is before ``before`` and that wait for no work,
        oldest first (up to ``limit``)."""
        ...

    async def delete_jobs(self, job_ids: Sequence[str], before: datetime) -> list[str]:
        """Delete the listed jobs (log, projection row, leases) in one transaction, each only
        if it is still finished, waiting for nothing and older than ``before``; the ids deleted.
        """
        ...

    async def page_states(self, after_job_id: str, limit: int) -> list[JobState]:
        """Every job, in job id order, starting after ``after_job_id`` (``""``: the first)."""
        ...


class MediaSweeper(Protocol):
    """Removes kept files by content hash (the media directory's owner)."""

    async def remove(self, sha256s: Sequence[str], older_than: datetime) -> tuple[int, int]:
        """Delete the kept files of these hashes last written before ``older_than``;
        ``(files, bytes)`` removed."""
        ...


@frozen
class PruneReport:
    """What a pruning pass deleted (or, dry, would delete)."""

    jobs: int
    files: int
    bytes: int
    oldest: datetime | None
    newest: datetime | None
    dry_run: bool


def _kept(state: JobState) -> set[str]:
    return {m.sha256 for m in state.media}


async def _unreferenced(
    store: RetentionStore, hashes: set[str], page: int, leaving: frozenset[str] = frozenset()
) -> set[str]:
    """Those of ``hashes`` no job in the store names, ``leaving`` aside (one pass)."""
    left = set(hashes)
    after = ""
    while left:
        states = await store.page_states(after, page)
        if not states:
            break
        for state in states:
            if state.job_id not in leaving:
                left -= _kept(state)
        after = states[-1].job_id
    return left


async def prune_once(
    store: RetentionStore,
    now: datetime,
    retention: timedelta,
    *,
    media: MediaSweeper | None = None,
    batch: int = 100,
    pause_s: float = 0.05,
    dry_run: bool = False,
    max_jobs: int | None = None,
) -> PruneReport:
    """Prune finished jobs older than ``now - retention`` in batches of ``batch``.

    Between batches it sleeps ``pause_s`` so requests are served meanwhile.
    ``dry_run`` deletes nothing and reports what would go.
    """
    before = now - retention
    jobs = files = size = 0
    oldest: datetime | None = None
    newest: datetime | None = None
    hashes: set[str] = set()
    leaving: set[str] = set()
    if dry_run:
        # Deleting nothing, it cannot page by deleting: one pass over every job instead.
        after = ""
        while states := await store.page_states(after, max(batch, 500)):
            after = states[-1].job_id
            for c in states:
                if c.done and c.work is None and c.updated_at < before:
                    jobs += 1
                    leaving.add(c.job_id)
                    hashes |= _kept(c)
                    oldest = c.updated_at if oldest is None else min(oldest, c.updated_at)
                    newest = c.updated_at if newest is None else max(newest, c.updated_at)
    while not dry_run and (max_jobs is None or jobs < max_jobs):
        candidates = await store.prune_candidates(before, batch)
        if not candidates:
            break
        gone = set(await store.delete_jobs([c.job_id for c in candidates], before))
        for c in candidates:
            if c.job_id in gone:
                jobs += 1
                hashes |= _kept(c)
                oldest = c.updated_at if oldest is None else min(oldest, c.updated_at)
                newest = c.updated_at if newest is None else max(newest, c.updated_at)
        if not gone:
            break  # every candidate changed meanwhile: the next pass looks again
        if pause_s > 0:
            await asyncio.sleep(pause_s)
    if hashes:
        scan_started = now
        unused = await _unreferenced(store, hashes, max(batch, 500), frozenset(leaving))
        if dry_run:
            files = len(unused)
        elif media is not None and unused:
            # A copy published after the scan began (a new job with the same file) has a
            # newer mtime and stays; the margin covers a copy whose event was still on its way.
            files, size = await media.remove(sorted(unused), scan_started - timedelta(minutes=10))
    return PruneReport(jobs, files, size, oldest, newest, dry_run)


@define
class Pruner:
    """The background pruner of one process (``async with``): a pass every ``every_s``."""

    store: RetentionStore
    clock: Clock
    retention: timedelta
    media: MediaSweeper | None = None
    every_s: float = 300.0
    batch: int = 100
    _task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="clipjobs-pruner")

    async def _run(self) -> None:
        while True:
            try:
                report = await prune_once(
                    self.store,
                    self.clock.now(),
                    self.retention,
                    media=self.media,
                    batch=self.batch,
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the loop outlives a failed pass; the next one retries
                pipeline_log.warning("pruning failed: %s: %s", type(exc).__name__, exc)
            else:
                if report.jobs:
                    pipeline_log.info(
                        "pruned %d finished jobs (%d kept files, %d bytes)",
                        report.jobs,
                        report.files,
                        report.bytes,
                    )
            await self.clock.sleep(self.every_s)

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
