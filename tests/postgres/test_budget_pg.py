"""PostgresCallBudget: the budget contract on the real PostgreSQL, and what only a shared budget
does (two instances on one schema are two processes as far as PostgreSQL can tell).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
from _pg_harness import DSN

from clipjobs import FakeClock
from clipjobs.ports import CallBudget
from clipjobs.testing import BudgetContract, BudgetFactory
from clipjobs_postgres import PostgresCallBudget


class TestPostgresCallBudget(BudgetContract):
    opened: list[PostgresCallBudget]

    @pytest_asyncio.fixture
    async def budget(self, clock: FakeClock, schema: str) -> AsyncIterator[BudgetFactory]:
        self.opened = []

        async def make(max_rps: float, **options: Any) -> CallBudget:
            budget = await PostgresCallBudget.open(DSN, schema, max_rps, clock=clock, **options)
            self.opened.append(budget)
            return budget

        yield make
        for budget in self.opened:
            await budget.aclose()

    async def settle(self) -> None:
        for _ in range(3):
            for budget in self.opened:
                await budget.settle()
            for _ in range(20):
                await asyncio.sleep(0)
