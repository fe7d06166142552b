"""runOnce takes one turn per user only when a cap has to be counted (issue 23's caps).

With caps on, the turns make the caps exact however the calls interleave; with
caps off nothing waits, so one user's concurrent runOnce calls commit together.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from _core_harness import make_service

from clipjobs import Commit, InMemoryEventStore, JobRequest
from clipjobs.domain.errors import JobAlreadyRunning, TooManyJobs
from clipjobs.testing import ScriptedSuno

pytestmark = pytest.mark.asyncio


class SlowStore(InMemoryEventStore):
    """Appends that take a few turns of the event loop, as a real store's do."""

    def __init__(self) -> None:
        super().__init__()
        self.appending = 0
        self.most_at_once = 0

    async def append(self, commit: Commit) -> Any:
        self.appending += 1
        self.most_at_once = max(self.most_at_once, self.appending)
        try:
            for _ in range(3):
                await asyncio.sleep(0)
            return await super().append(commit)
        finally:
            self.appending -= 1


def _service(**caps: Any) -> tuple[Any, SlowStore]:
    service, _, _, _ = make_service(ScriptedSuno(credits=1000), **caps)
    store = SlowStore()
    service.store = store
    return service, store


async def _burst(service: Any, n: int) -> list[Any]:
    """``n`` runOnce calls of one user on ``n`` channels, arriving one loop turn apart."""

    async def one(i: int) -> Any:
        for _ in range(i):
            await asyncio.sleep(0)
        return await service.start_job(JobRequest(f"ch-{i}", "u1"))

    return await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)


@pytest.mark.parametrize("cap", [1, 3, 7])
async def test_the_active_cap_is_exact_when_calls_interleave(cap: int) -> None:
    service, store = _service(max_active_per_user=cap)
    results = await _burst(service, 40)
    started = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, TooManyJobs)]
    assert len(started) == cap and len(refused) == 40 - cap, results
    assert store.most_at_once == 1  # one turn at a time for the one user
    assert service._user_turns == {}  # every turn was given back


async def test_without_caps_one_user_s_calls_do_not_wait_for_each_other() -> None:
    service, store = _service(max_active_per_user=0, max_starts_per_user_per_hour=0)
    results = await _burst(service, 20)
    assert all(not isinstance(r, BaseException) for r in results), results
    assert store.most_at_once > 1  # they were appending together


async def test_without_caps_the_store_still_keeps_one_job_per_channel() -> None:
    """Nobody waits, so racing calls on one channel all get past the look-up: the store's
    channel lock decides, and the losers get JobAlreadyRunning naming the winner."""
    service, store = _service(max_active_per_user=0, max_starts_per_user_per_hour=0)
    results = await asyncio.gather(
        *(service.start_job(JobRequest("one-channel", "u1")) for _ in range(8)),
        return_exceptions=True,
    )
    started = [r for r in results if not isinstance(r, BaseException)]
    assert len(started) == 1, results
    assert all(
        isinstance(r, JobAlreadyRunning) and r.job_id == started[0].job.job_id
        for r in results
        if r is not started[0]
    ), results
    assert store.most_at_once > 1  # they did race to the store
