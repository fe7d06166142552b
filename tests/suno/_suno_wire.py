"""Raw HTTP to a running fake Suno on a fake clock: what the wire tests send and read."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import aiohttp

from clipjobs import FakeClock
from clipjobs_suno.fake import FakeSuno, running_fake_suno

AUTH = {"Authorization": "Bearer any-key"}


def generate_body(callback_url: str, **fields: Any) -> dict[str, Any]:
    """A generate body in simple mode (model V4_5, prompt "a song"), ``fields`` written over it."""
    return {
        "customMode": False,
        "instrumental": False,
        "model": "V4_5",
        "callBackUrl": callback_url,
        "prompt": "a song",
        **fields,
    }


class Wire:
    """Raw HTTP to a running fake, with its clock."""

    def __init__(self, url: str, fake: FakeSuno, clock: FakeClock, session: aiohttp.ClientSession):
        self.url, self.fake, self.clock, self.session = url, fake, clock, session

    async def call(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, **kw: Any
    ) -> tuple[int, Any]:
        async with self.session.request(
            method, self.url + path, headers=AUTH if headers is None else headers, **kw
        ) as response:
            return response.status, await response.json(content_type=None)

    async def generate(self, callback: str, **fields: Any) -> str:
        body = generate_body(callback, **fields)
        status, answer = await self.call("POST", "/api/v1/generate", json=body)
        assert status == 200 and answer["code"] == 200, answer
        return str(answer["data"]["taskId"])

    async def record_info(self, task_id: str) -> dict[str, Any]:
        status, answer = await self.call(
            "GET", "/api/v1/generate/record-info", params={"taskId": task_id}
        )
        assert status == 200 and answer["code"] == 200, answer
        return dict(answer["data"])


W = TypeVar("W", bound=Wire)


@contextlib.asynccontextmanager
async def open_wire(wire: type[W], **fake_options: Any) -> AsyncIterator[W]:
    """A fake Suno (``fake_options`` to ``running_fake_suno``) on a fake clock, and a session."""
    clock = FakeClock()
    async with (
        running_fake_suno(clock=clock, **fake_options) as (url, fake),
        aiohttp.ClientSession() as session,
    ):
        yield wire(url, fake, clock, session)
