"""The in-process SunoBudget passes the budget contract every CallBudget passes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio

from clipjobs import FakeClock, SunoBudget
from clipjobs.app.ports import CallBudget
from clipjobs.testing import BudgetContract, BudgetFactory


class TestSunoBudget(BudgetContract):
    @pytest_asyncio.fixture
    async def budget(self, clock: FakeClock) -> AsyncIterator[BudgetFactory]:
        opened: list[SunoBudget] = []

        async def make(max_rps: float, **options: Any) -> CallBudget:
            options.setdefault("pacing", False)
            opened.append(SunoBudget(max_rps, clock=clock, **options))
            return opened[-1]

        yield make
        for budget in opened:
            await budget.aclose()
