"""A webhook receiver for the tests: a real aiohttp app on 127.0.0.1 that verifies every signature.

Each request is checked with ``standardwebhooks.Webhook.verify`` (what a
receiver of clipjobs' webhooks would run) against the secrets it is told;
then ``script`` says how to answer: a status, or ``"hang"`` (never answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web
from attrs import define, field
from standardwebhooks import Webhook


@define
class Received:
    webhook_id: str
    timestamp: str
    body: dict[str, Any]
    status: int | str


@define
class Receiver:
    """What arrived, verified; and how to answer the next requests."""

    secrets: list[str] = field(factory=list)
    #: Answers for the coming requests, first first; then ``default``.
    script: list[int | str] = field(factory=list)
    default: int = 200
    #: When set, the answer for a webhook-id (instead of ``script``).
    answer_for: Callable[[str], int | str] | None = None
    received: list[Received] = field(factory=list)
    unverified: list[str] = field(factory=list)
    arrived: asyncio.Event = field(factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        headers = dict(request.headers)
        body: dict[str, Any] | None = None
        for secret in self.secrets:
            try:
                body = Webhook(secret).verify(raw, headers)
                break
            except Exception:
                continue
        if body is None:
            self.unverified.append(raw.decode(errors="replace"))
            return web.Response(status=400, text="bad signature")
        if self.answer_for is not None:
            answer = self.answer_for(request.headers["webhook-id"])
        else:
            answer = self.script.pop(0) if self.script else self.default
        self.received.append(
            Received(
                request.headers["webhook-id"],
                request.headers["webhook-timestamp"],
                body,
                answer,
            )
        )
        self.arrived.set()
        if answer == "hang":
            await asyncio.sleep(3600)
        return web.Response(status=int(answer), text=json.dumps({"ok": True}))

    def ok(self) -> list[Received]:
        """The requests answered with a 2xx."""
        return [r for r in self.received if isinstance(r.status, int) and r.status < 300]

    async def wait(self, predicate: Any, timeout: float = 20.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self.arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.arrived.wait(), 0.2)


@contextlib.asynccontextmanager
async def serving(receiver: Receiver, port: int = 0) -> AsyncIterator[str]:
    """Serve ``receiver`` on 127.0.0.1 (``port`` 0: any); yield its URL."""
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", port, reuse_address=True)
        await site.start()
        bound = runner.addresses[0][1]
        yield f"http://127.0.0.1:{bound}/hook"
    finally:
        await runner.cleanup()
