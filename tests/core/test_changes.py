"""The change notifier behind SSE, long-polls and the render's cancel watch."""

from __future__ import annotations

import asyncio

import pytest

from clipjobs.app.changes import ChangeNotifier

pytestmark = pytest.mark.asyncio


class Watched:
    """The job "job" at a version the test sets, and its change notifier."""

    def __init__(self) -> None:
        self.notifier = ChangeNotifier()
        self.version = 1

    async def current(self) -> int:
        return self.version

    async def waiter(self) -> asyncio.Future[bool]:
        """A wait for a change after version 1, once it is registered and waiting."""
        waiter = asyncio.ensure_future(self.notifier.wait("job", 1, 60.0, self.current))
        for _ in range(5):
            await asyncio.sleep(0)
        return waiter


async def test_a_cancel_that_lands_with_the_change_is_not_lost() -> None:
    """A waiter cancelled in the same loop turn its job changes raises CancelledError.

    Python 3.11's ``wait_for`` returns the inner result instead when both land at
    once; a render's cancel watch then waited on for ever (found by the ffmpeg tests).
    """
    job = Watched()
    waiter = await job.waiter()
    job.notifier.notify("job")
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(waiter, 5)


async def test_a_change_wakes_the_waiter() -> None:
    job = Watched()
    waiter = await job.waiter()
    job.version = 2
    job.notifier.notify("job")
    assert await asyncio.wait_for(waiter, 5) is True
