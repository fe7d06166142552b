"""Issue 15 over real processes: three ``clipjobs serve`` on one PostgreSQL schema, each with the
default ``CLIPJOBS_SUNO_MAX_RPS`` (2), against the fake Suno over HTTP with its default limit
(20 calls per 10 s). The shared budget keeps all of them inside that one limit: no 10 s window
holds more than 20 arrivals, none is answered 430, every job succeeds, also when one process is
SIGKILLed mid-run. CI runs 60 jobs (about 30 s of Suno calls at 2 a second); the issue's 300
are in ``bench/bench_budget_pg.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _budget_fleet import SUNO_LIMIT, run_fleet
from _pg_harness import DSN

from clipjobs.domain.stages import Stage

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

JOBS = 60


async def test_three_processes_stay_inside_one_suno_limit(schema: str, tmp_path: Path) -> None:
    """60 jobs on three processes: at most 20 calls reach Suno in any 10 s, none is refused
    430, every job succeeds, and every process makes calls.
    """
    run = await run_fleet(DSN, schema, JOBS, tmp_path, finish_limit_s=240)
    print(run.summary())
    assert run.stages == {Stage.SUNO_SUCCESS.value: JOBS}
    assert run.rate_limited == 0
    assert run.peak <= SUNO_LIMIT
    assert len(run.shares) == 3 and min(run.shares.values()) > 0, run.shares


async def test_the_survivors_of_a_killed_process_stay_inside_the_same_limit(
    schema: str, tmp_path: Path
) -> None:
    """One of the three is SIGKILLed mid-run: the other two finish every job, still at most 20
    calls in any 10 s and none refused 430.
    """
    run = await run_fleet(DSN, schema, JOBS, tmp_path, kill_after_s=10.0, finish_limit_s=240)
    print(run.summary())
    assert run.stages == {Stage.SUNO_SUCCESS.value: JOBS}
    assert run.rate_limited == 0
    assert run.peak <= SUNO_LIMIT and run.peak_after_kill <= SUNO_LIMIT
