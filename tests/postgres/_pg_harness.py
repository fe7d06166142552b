"""Helpers for the PostgreSQL tests: a loopback TCP proxy that can "lose" the database.

``TcpProxy`` forwards 127.0.0.1:<its port> to the real server. ``drop()``
cuts every open connection and stops listening, so the server looks
unreachable (connection refused), exactly as when it goes away; ``restore()``
listens again on the same port. A store whose DSN points at the proxy sees
the database go and come back without touching the real server.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from clipjobs_postgres import PostgresEventStore

DSN = os.environ.get("CLIPJOBS_TEST_PG_DSN", "")

#: ``stores(dsn=DSN, **options)``: open another store on the test's schema.
StoreFactory = Callable[..., Awaitable[PostgresEventStore]]


def fresh_schema() -> str:
    return f"t_{secrets.token_hex(6)}"


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0
        #: Connections accepted so far (a store that recovered opened new ones).
        self.accepted = 0

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        self._server = await asyncio.start_server(self._accept, sock=sock)

    def dsn(self, dsn: str) -> str:
        """``dsn`` with its host and port replaced by the proxy's."""
        parts = urlsplit(dsn)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@127.0.0.1:{self.port}" if userinfo else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, writer)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.close()
            self._tasks.difference_update(pumps)

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()

    async def drop(self) -> None:
        """The database goes away: open connections are cut, new ones refused."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        if server is not None:
            await server.wait_closed()
        # Let the pumps see their sockets die.
        for _ in range(5):
            await asyncio.sleep(0)

    async def restore(self) -> None:
        """The database is back on the same address."""
        await self.start()

    async def aclose(self) -> None:
        await self.drop()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@contextlib.asynccontextmanager
async def running_proxy(dsn: str) -> AsyncIterator[TcpProxy]:
    parts = urlsplit(dsn)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.aclose()


async def backend_pids(admin: asyncpg.Connection, application_name: str) -> list[int]:
    """The server pids of every connection that named itself ``application_name``."""
    rows = await admin.fetch(
        "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()",
        application_name,
    )
    return [r["pid"] for r in rows]


async def terminate(admin: asyncpg.Connection, pids: list[int]) -> None:
    """Kill these backends as an operator (or a crashing server) would."""
    for pid in pids:
        await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
