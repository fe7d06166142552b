"""``BoundedSockSite``: serve on a listening socket, holding at most N connections.

aiohttp has no connection limit: every accepted connection costs a file
descriptor and a task until the client leaves, so a few thousand idle or
slow clients exhaust the process. Past the limit this site still accepts
(the kernel would queue the client otherwise, which looks like a hang), but
answers ``503`` with ``Retry-After`` and closes at once, before reading the
request.

The time a request head may take is the runner's: aiohttp's
``keepalive_timeout`` timer starts when a connection opens and again after
each answer, and closes the connection if no complete request head has
arrived when it fires. A client trickling one header line every 10 s and an
idle keep-alive connection are both closed after it; it does not run while a
request is handled, so SSE streams and long-polls live on. Pass
``keepalive_timeout=DEFAULT_HEAD_TIMEOUT_S`` (or ``CLIPJOBS_HEAD_TIMEOUT_S``)
to ``web.AppRunner``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from datetime import UTC, datetime

from aiohttp import web

from clipjobs.app.ids import new_request_id
from clipjobs.app.metrics import Metrics

__all__ = ["DEFAULT_HEAD_TIMEOUT_S", "DEFAULT_MAX_CONNECTIONS", "BoundedSockSite"]

DEFAULT_MAX_CONNECTIONS = 1000
#: How long a connection may go without a complete request head, from its
#: opening or from its previous answer: aiohttp's ``keepalive_timeout``.
DEFAULT_HEAD_TIMEOUT_S = 15.0

_log = logging.getLogger("clipjobs.pipeline")
#: A refused client gets this long to read the answer and hang up.
_LINGER_S = 1.0
#: A warning at most this often while connections are refused (a flood is one story).
_WARN_EVERY_S = 60.0


def _refusal() -> bytes:
    body = json.dumps(
        {
            "success": False,
            "ok": False,
            "error": "TOO_MANY_CONNECTIONS",
            "message": "The server holds as many connections as it may; try again shortly.",
            "requestId": new_request_id(datetime.now(UTC)),
        }
    ).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "Content-Type: application/json; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Retry-After: 1\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


class _Refusal(asyncio.Protocol):
    """Answers 503 and closes without reading the request.

    The write side is shut first and what the client sends is read and
    dropped until it hangs up (or ``_LINGER_S`` passes): closing a socket with
    unread bytes would reset the connection and could lose the answer.
    """

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.write(_refusal())
        if transport.can_write_eof():
            transport.write_eof()
        self._timer = asyncio.get_running_loop().call_later(_LINGER_S, transport.abort)

    def data_received(self, data: bytes) -> None:
        pass  # the request is not read: it will not be served

    def eof_received(self) -> bool:
        if self._transport is not None:
            self._transport.close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()


class BoundedSockSite(web.BaseSite):
    """Like ``web.SockSite``, but past ``max_connections`` open ones new clients get 503.

    SSE streams and long-polls count as connections like any other: size the
    limit for the streams you expect (each holds one connection for its job's
    life) and put a reverse proxy in front for the rest.
    """

    def __init__(
        self,
        runner: web.BaseRunner,
        sock: socket.socket,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        metrics: Metrics | None = None,
        backlog: int = 1024,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        super().__init__(runner, backlog=backlog)
        self._owner = runner
        self._sock = sock
        self._listen_backlog = backlog
        self.max_connections = max_connections
        self._metrics = metrics
        self._listener: asyncio.Server | None = None
        self._refused = 0
        self._warned_at = float("-inf")
        host, port = sock.getsockname()[:2]
        self._name = f"http://{host}:{port}"

    @property
    def name(self) -> str:
        return self._name

    @property
    def refused(self) -> int:
        """Connections refused with 503 since the site started."""
        return self._refused

    async def start(self) -> None:
        await super().start()
        server = self._owner.server
        if server is None:
            raise RuntimeError("call runner.setup() before starting a site")

        def protocol() -> asyncio.BaseProtocol:
            if len(server.connections) < self.max_connections:
                return server()
            self._refuse()
            return _Refusal()

        self._listener = await asyncio.get_running_loop().create_server(
            protocol, sock=self._sock, backlog=self._listen_backlog
        )

    def _refuse(self) -> None:
        self._refused += 1
        if self._metrics is not None:
            self._metrics.inc("clipjobs_http_connections_refused_total")
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY_S:
            self._warned_at = now
            _log.warning(
                "connection limit reached (%d open): refusing new connections with 503"
                " (%d refused so far; CLIPJOBS_MAX_CONNECTIONS)",
                self.max_connections,
                self._refused,
            )

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        await super().stop()
