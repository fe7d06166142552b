"""``clipjobs serve``'s own composition in this process, its text log captured, and raw sockets.

The hardening tests send exactly the bytes an attacker sent, so they talk to
the server through a plain TCP socket, not through an HTTP client that would
tidy the request up first.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from attrs import define

from clipjobs.app.config import Settings
from clipjobs.app.logs import RedactingFilter
from clipjobs_aiohttp import ApiConfig
from clipjobs_cli import RunningServer, running_server
from clipjobs_cli._logging import log_handler

TOKEN = "alice-token-0001"
USER = "alice"


@define
class Served:
    """The running server and what it has logged so far."""

    server: RunningServer
    log: io.StringIO

    @property
    def host_port(self) -> tuple[str, int]:
        host, port = self.server.url.removeprefix("http://").rsplit(":", 1)
        return host, int(port)

    def mark(self) -> int:
        return len(self.log.getvalue())

    def lines_since(self, mark: int) -> list[str]:
        """Every physical line logged since ``mark`` (the text ends with a newline)."""
        text = self.log.getvalue()[mark:]
        return text.split("\n")[:-1]

    async def lines_logged(self, mark: int, at_least: int = 1, limit_s: float = 5.0) -> list[str]:
        """``lines_since(mark)`` once it holds ``at_least`` lines: the access line of an answer
        may be written just after the client has read the answer and the connection closed."""
        async with asyncio.timeout(limit_s):
            while len(lines := self.lines_since(mark)) < at_least:
                await asyncio.sleep(0.01)
        return lines

    async def request(self, raw: bytes, *, limit_s: float = 30.0) -> bytes:
        """Send ``raw`` as it is on a new connection and read until the server closes it."""
        reader, writer = await asyncio.open_connection(*self.host_port)
        try:
            writer.write(raw)
            await writer.drain()
            return await asyncio.wait_for(reader.read(), limit_s)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


def status_of(answer: bytes) -> int:
    """The status code of a raw HTTP/1.x answer."""
    return int(answer.split(b" ", 2)[1])


def get(path: str, *headers: bytes) -> bytes:
    """A raw ``GET`` with ``Connection: close`` and the given header lines."""
    lines = [f"GET {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", *headers, b"Connection: close"]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def post(path: str, body: bytes, *headers: bytes) -> bytes:
    """A raw ``POST`` of a JSON ``body`` with ``Connection: close``."""
    lines = [
        f"POST {path} HTTP/1.1".encode(),
        b"Host: 127.0.0.1",
        b"Content-Type: application/json",
        b"Content-Length: %d" % len(body),
        *headers,
        b"Connection: close",
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def json_of(answer: bytes) -> dict[str, Any]:
    """The JSON body of a raw HTTP/1.x answer."""
    body: dict[str, Any] = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    return body


def bearer(token: bytes | str = TOKEN) -> bytes:
    return b"Authorization: Bearer " + (token.encode() if isinstance(token, str) else token)


async def read_answer(reader: asyncio.StreamReader) -> bytes:
    """One HTTP/1.1 answer with a Content-Length, read off a kept-alive connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head + await reader.readexactly(length)


@contextlib.asynccontextmanager
async def served(
    tmp_path: Path, *, api_config: ApiConfig | None = None, **settings: Any
) -> AsyncIterator[Served]:
    """``running_server`` on 127.0.0.1:0 (demo Suno, SQLite in ``tmp_path``), text log captured."""
    log = io.StringIO()
    redactor = RedactingFilter()
    handler = log_handler("text", redactor, log)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    options: dict[str, Any] = {
        "db_url": f"sqlite:///{tmp_path / 'clipjobs.db'}",
        "port": 0,
        "tokens": {TOKEN: USER},
        "media_dir": tmp_path / "media",
        **settings,
    }
    try:
        async with running_server(
            Settings(**options), redactor=redactor, api_config=api_config
        ) as server:
            yield Served(server, log)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
