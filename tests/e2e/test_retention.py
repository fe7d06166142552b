"""Retention (SPEC 10.4) on SQLite and PostgreSQL: 10,000 old finished jobs and 100 active ones.

Only the old finished jobs go: their log, projection row, idempotency key and the kept
files no other job names. Active jobs, recent finished jobs and a finished job still
waiting for its media copy stay, as does a file another job shares.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from _stack import open_store

from clipjobs import JobPolicy, MediaKind
from clipjobs.app.ports import Commit, EventStore
from clipjobs.app.retention import prune_once
from clipjobs.domain.commands import (
    FailJob,
    KeepMedia,
    MarkRequestSent,
    RecordObservation,
    RecordTaskCreated,
)
from clipjobs.domain.events import Observation, ProviderStatus, Source, Track
from clipjobs.testing import new_job, step
from clipjobs_ffmpeg import KeptFiles

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

OLD = datetime(2025, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 1, 1, tzinfo=UTC)
RETENTION = timedelta(days=30)
FILE_EVERY = 500  # one old job in this many has a kept file


def sha_of(n: int) -> str:
    return f"{n:064x}"


async def _succeed(
    store: EventStore, at: datetime, key: str | None, media: int | None, pending: bool = False
) -> str:
    """A job that succeeded at ``at``, with a kept file ``media`` (or a copy still due)."""
    c = new_job(at=at, key=key, user_id="u1" if key else None, policy=JobPolicy(keep_media=True))
    commits: list[Commit] = [c]
    state = c.state
    track = Track(f"t-{c.job_id}", audio_url="https://cdn.example/a.mp3")
    for command in (
        MarkRequestSent(at),
        RecordTaskCreated(f"task-{c.job_id}", at),
        RecordObservation(
            Observation(f"task-{c.job_id}", ProviderStatus.SUCCESS, (track,)), Source.POLL, at
        ),
    ):
        commits.append(step(state, command))
        state = commits[-1].state
    if not pending:
        sha = sha_of(media) if media is not None else "ee" * 32
        commits.append(step(state, KeepMedia(track.id, MediaKind.AUDIO, sha, 5, "audio/mpeg", at)))
    for commit in commits:
        await store.append(commit)
    return c.job_id


async def _failed(store: EventStore, at: datetime) -> str:
    c = new_job(at=at)
    await store.append(c)
    await store.append(step(c.state, FailJob("X", "no", at)))
    return c.job_id


async def _active(store: EventStore, at: datetime) -> str:
    c = new_job(at=at)
    await store.append(c)
    return c.job_id


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_pruning_removes_only_old_finished_jobs_and_their_unshared_files(
    backend: str, tmp_path: Path
) -> None:
    """10,000 old finished jobs go in batches (with the files only they name); 100 active,
    recent finished, media-pending and file-sharing jobs stay, untouched.
    """
    if backend == "postgres" and not os.environ.get("CLIPJOBS_TEST_PG_DSN"):
        pytest.skip("no CLIPJOBS_TEST_PG_DSN: PostgreSQL not set")
    media = tmp_path / "media" / ".kept"
    media.mkdir(parents=True)
    async with open_store(backend, tmp_path) as store:
        old: list[str] = []
        for start in range(0, 10_000, 250):
            made = await asyncio.gather(
                *(
                    _succeed(store, OLD + timedelta(seconds=i), f"key-{i}", i // FILE_EVERY)
                    if i % 2 == 0
                    else _failed(store, OLD + timedelta(seconds=i))
                    for i in range(start, start + 250)
                )
            )
            old.extend(made)
        files = {i // FILE_EVERY for i in range(0, 10_000, 2)}
        for n in files:
            (media / f"{sha_of(n)}.mp3").write_bytes(b"x" * 5)
            os.utime(media / f"{sha_of(n)}.mp3", (OLD.timestamp(), OLD.timestamp()))
        active = list(await asyncio.gather(*(_active(store, OLD) for _ in range(100))))
        recent = await _succeed(store, NOW - timedelta(days=1), None, 0)  # shares file 0
        pending = await _succeed(store, OLD, None, None, pending=True)

        dry = await prune_once(
            store, NOW, RETENTION, media=KeptFiles(tmp_path / "media"), dry_run=True
        )
        assert dry.jobs == 10_000 and dry.files == len(files) - 1
        for job_id in old[:50]:
            assert await store.load(job_id) is not None

        report = await prune_once(
            store, NOW, RETENTION, media=KeptFiles(tmp_path / "media"), batch=500, pause_s=0
        )
        assert report.jobs == 10_000 and report.files == len(files) - 1
        for job_id in old[::97]:
            assert await store.load(job_id) is None and await store.read(job_id) == []
        assert await store.find_by_idempotency_key("u1", "key-0") is None
        for job_id in [*active, recent, pending]:
            state = await store.load(job_id)
            assert state is not None and len(await store.read(job_id)) == state.version
        assert await store.count_active() == 100
        assert sorted(p.name for p in media.iterdir()) == [f"{sha_of(0)}.mp3"]
        again = await prune_once(store, NOW, RETENTION, media=KeptFiles(tmp_path / "media"))
        assert again.jobs == 0
