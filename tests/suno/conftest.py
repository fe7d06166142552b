"""Real servers on 127.0.0.1:0 for the Suno tests: a callback receiver and a scriptable server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest_asyncio
from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Receiver:
    """Collects callback bodies; ``answers`` scripts the HTTP status of each next call."""

    def __init__(self) -> None:
        self.bodies: list[Any] = []
        self.answers: list[int] = []
        self.hang = False
        self.url = ""

    def for_task(self, task_id: str) -> list[Any]:
        return [
            b
            for b in self.bodies
            if isinstance(b, dict) and (b.get("data") or {}).get("task_id") == task_id
        ]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.bodies.append(await request.json())
        if self.hang:
            await asyncio.sleep(3600)
        status = self.answers.pop(0) if self.answers else 200
        return web.json_response({"received": True}, status=status)


async def serve(app: web.Application) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1:0 and yield its base URL."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A callback receiver listening on 127.0.0.1:0."""
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/cb", rec.handle)
    async for base in serve(app):
        rec.url = f"{base}/cb?job=job_1_abcdef&token=webhook-secret"
        yield rec


class Scripted:
    """A server whose next answer a test sets: ``handler`` runs for every request."""

    def __init__(self) -> None:
        self.handler: Handler = self._default
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.url = ""

    async def _default(self, _: web.Request) -> web.StreamResponse:
        return web.json_response({"code": 200, "msg": "success", "data": None})

    def answer(self, status: int = 200, body: bytes | str = b"", **headers: str) -> None:
        raw = body.encode() if isinstance(body, str) else body

        async def handler(_: web.Request) -> web.StreamResponse:
            return web.Response(status=status, body=raw, headers=headers)

        self.handler = handler

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(
            (request.method, request.path_qs, dict(request.headers), await request.read())
        )
        return await self.handler(request)


@pytest_asyncio.fixture
async def scripted() -> AsyncIterator[Scripted]:
    """A real aiohttp server on 127.0.0.1:0 answering whatever the test scripts."""
    server = Scripted()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.dispatch)
    async for base in serve(app):
        server.url = base
        yield server
