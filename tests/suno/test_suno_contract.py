"""The real client against the fake Suno over real HTTP passes the shared Suno contract."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import pytest_asyncio

from clipjobs import FakeClock
from clipjobs.testing import SunoClientContract
from clipjobs_suno import SunoApiClient
from clipjobs_suno.fake import FakeSuno, running_fake_suno


class TestClientAgainstFakeSuno(SunoClientContract):
    @pytest_asyncio.fixture
    async def suno(self, receiver: Any) -> AsyncIterator[SunoApiClient]:
        self.clock = FakeClock()
        self.receiver = receiver
        async with (
            running_fake_suno(clock=self.clock) as (base_url, fake),
            aiohttp.ClientSession() as session,
        ):
            self.fake: FakeSuno = fake
            self.base_url = base_url
            self.session = session
            yield SunoApiClient(session, "test-key", base_url=base_url)

    def callback_url(self) -> str:
        return str(self.receiver.url)

    async def configure(self, **config: Any) -> None:
        # Through the control endpoint, as a demo user would.
        async with self.session.post(f"{self.base_url}/_fake/config", json=config) as response:
            assert response.status == 200, await response.text()

    async def advance(self, seconds: float) -> None:
        await self.clock.advance(seconds)

    async def callbacks(self, task_id: str) -> list[Mapping[str, Any]]:
        await self.fake.settle()
        return list(self.receiver.for_task(task_id))
