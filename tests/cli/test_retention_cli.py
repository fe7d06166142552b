"""``clipjobs prune``, ``clipjobs export`` and ``CLIPJOBS_RETENTION_DAYS`` as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from clipjobs.domain.commands import FailJob
from clipjobs.testing import new_job, step
from clipjobs_sqlite import SQLiteEventStore

OLD = datetime(2025, 1, 1, tzinfo=UTC)


def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CLIPJOBS_", "SUNO_"))}
    clean.update({"CLIPJOBS_DB": f"sqlite:///{tmp_path / 'clipjobs.db'}", **env})
    clean["CLIPJOBS_MEDIA_DIR"] = str(tmp_path / "media")
    return subprocess.run(
        [sys.executable, "-m", "clipjobs_cli", *args],
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def _jobs(tmp_path: Path, finished: int, active: int) -> tuple[list[str], list[str]]:
    done, running = [], []
    async with await SQLiteEventStore.open(tmp_path / "clipjobs.db") as store:
        for i in range(finished):
            at = OLD + timedelta(minutes=i)
            c = new_job(at=at, channel_id="old" if i % 2 else "other")
            await store.append(c)
            await store.append(step(c.state, FailJob("X", "no", at)))
            done.append(c.job_id)
        for _ in range(active):
            c = new_job(at=OLD)
            await store.append(c)
            running.append(c.job_id)
    return done, running


def test_a_retention_that_is_not_a_number_stops_start_up_with_one_line(tmp_path: Path) -> None:
    """CLIPJOBS_RETENTION_DAYS=soon: exit 2, one line naming the setting, nothing created."""
    result = run(tmp_path, "serve", CLIPJOBS_RETENTION_DAYS="soon", CLIPJOBS_PORT="0")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "clipjobs: error: CLIPJOBS_RETENTION_DAYS='soon' is not a number"
    ]
    assert not (tmp_path / "clipjobs.db").exists()
    result = run(tmp_path, "prune", CLIPJOBS_RETENTION_DAYS="-1")
    assert result.returncode == 2 and "CLIPJOBS_RETENTION_DAYS" in result.stderr


@pytest.mark.asyncio
async def test_export_writes_one_parseable_line_per_job_with_its_body_and_log(
    tmp_path: Path,
) -> None:
    """Every line parses to the job's GET body and its whole log; --channel and --before filter;
    a bad --before is a usage error.
    """
    done, running = await _jobs(tmp_path, 20, 3)
    result = run(tmp_path, "export")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 23
    by_id = {line["job"]["jobId"]: line for line in lines}
    assert set(by_id) == set(done) | set(running)
    for line in lines:
        assert line["format"] == "clipjobs-export-1"
        assert line["job"]["success"] is True
        assert [e["version"] for e in line["events"]] == list(range(1, line["job"]["version"] + 1))
    assert by_id[done[0]]["events"][-1]["type"] == "JobFailed"

    only = run(tmp_path, "export", "--channel", "old")
    assert {json.loads(x)["job"]["channelId"] for x in only.stdout.splitlines()} == {"old"}
    early = run(tmp_path, "export", "--before", "2025-01-01T00:05:00")
    assert len(early.stdout.splitlines()) == 5 + 3  # jobs 0-4, and the active ones (at OLD)
    bad = run(tmp_path, "export", "--before", "yesterday")
    assert bad.returncode == 2 and "is not a date" in bad.stderr


@pytest.mark.asyncio
async def test_prune_says_what_it_would_delete_then_deletes_it(tmp_path: Path) -> None:
    """--dry-run names the count and deletes nothing; without it the old finished jobs go and
    the active ones stay. Without a retention it refuses, saying why.
    """
    done, running = await _jobs(tmp_path, 30, 5)
    refused = run(tmp_path, "prune")
    assert refused.returncode == 2 and "CLIPJOBS_RETENTION_DAYS is 0" in refused.stderr
    dry = run(tmp_path, "prune", "--dry-run", CLIPJOBS_RETENTION_DAYS="30")
    assert dry.returncode == 0, dry.stderr
    assert "would delete 30 finished jobs older than 30 days" in dry.stdout
    assert "deleted" not in dry.stdout
    real = run(tmp_path, "prune", CLIPJOBS_RETENTION_DAYS="30")
    assert real.returncode == 0, real.stderr
    assert "deleted 30 jobs" in real.stdout
    async with await SQLiteEventStore.open(tmp_path / "clipjobs.db") as store:
        assert all([await store.load(j) is None for j in done])
        assert all([await store.load(j) is not None for j in running])


@pytest.mark.asyncio
async def test_the_server_prunes_in_the_background_when_a_retention_is_set(
    tmp_path: Path,
) -> None:
    """``clipjobs serve`` with CLIPJOBS_RETENTION_DAYS prunes old finished jobs at start-up and
    leaves the active ones.
    """
    import asyncio

    from clipjobs.app.config import Settings
    from clipjobs_cli import running_server

    done, running = await _jobs(tmp_path, 12, 2)
    settings = Settings(
        db_url=f"sqlite:///{tmp_path / 'clipjobs.db'}",
        port=0,
        tokens={"prune-token-1": "u"},
        media_dir=tmp_path / "media",
        retention_days=30,
    )
    async with running_server(settings) as server:
        async with asyncio.timeout(30):
            while await server.store.load(done[-1]) is not None:
                await asyncio.sleep(0.05)
        assert all([await server.store.load(j) is None for j in done])
        assert all([await server.store.load(j) is not None for j in running])
