"""Clocks: the system's, and a fake one tests move by hand."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

__all__ = ["FakeClock", "SystemClock"]


class SystemClock:
    """Wall-clock UTC time and real sleeps."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class FakeClock:
    """A clock that moves only when told to.

    ``sleep`` waits until :meth:`advance` has moved the clock past the wake-up
    time; with ``auto_advance=True`` it moves the clock itself and only yields,
    so loops of workers run at full speed in tests.
    """

    def __init__(self, start: datetime | None = None, *, auto_advance: bool = False) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._auto = auto_advance
        self._moved = asyncio.Condition() if not auto_advance else None

    def now(self) -> datetime:
        return self._now

    def set(self, when: datetime) -> None:
        self._now = when

    async def advance(self, seconds: float) -> None:
        """Move the clock forward and wake the sleepers that are due."""
        self._now += timedelta(seconds=seconds)
        if self._moved is not None:
            async with self._moved:
                self._moved.notify_all()
        await asyncio.sleep(0)

    async def sleep(self, seconds: float) -> None:
        wake = self._now + timedelta(seconds=max(0.0, seconds))
        if self._moved is None:
            self._now = max(self._now, wake)
            await asyncio.sleep(0)
            return
        async with self._moved:
            await self._moved.wait_for(lambda: self._now >= wake)
