"""The client commands' view of the HTTP API: four calls, and every failure as one of two errors.

No aiohttp exception leaves this module: an answer the server gave is an
:class:`ApiAnswerError` (status, code, message, the body), anything that kept
an answer from arriving is :class:`ConnectionLost`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Mapping
from typing import Any
from urllib.parse import quote

import aiohttp

__all__ = ["ApiAnswerError", "ConnectionLost", "JobsApi", "sleep_backoff"]

#: How long a connection may take to open before the server counts as unreachable.
CONNECT_TIMEOUT_S = 10.0
#: The server writes a keep-alive comment every 15 s: this much silence means the stream is dead.
SSE_SILENCE_S = 45.0
#: ``Prefer: wait=N`` for the long-poll fallback (the server holds at most 60 s).
LONG_POLL_WAIT_S = 25


class ApiAnswerError(Exception):
    """The server answered, with an error: its status, ``error`` code, message and body."""

    def __init__(self, status: int, code: str, message: str, body: Mapping[str, Any]) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.status = status
        self.code = code
        self.message = message
        self.body: dict[str, Any] = dict(body)

    @property
    def transient(self) -> bool:
        """A gateway or an overloaded server: worth asking again."""
        return self.status in (429, 502, 503, 504)


class ConnectionLost(Exception):
    """No answer: the server is unreachable, or a connection or stream broke."""


def _error_from(status: int, text: str) -> ApiAnswerError:
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return ApiAnswerError(status, body["error"], str(body.get("message") or ""), body)
    # Not clipjobs talking (a proxy's page, a wrong URL): say what came back.
    return ApiAnswerError(status, f"HTTP_{status}", text.strip()[:200], {})


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class JobsApi:
    """``POST runOnce``, ``GET`` a job (long-poll), its SSE stream and its history."""

    def __init__(
        self, session: aiohttp.ClientSession, base_url: str, token: str, lang: str
    ) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._headers = {
            "Authorization": f"Bearer {token}",
            "Accept-Language": lang,
        }

    @property
    def base_url(self) -> str:
        return self._base

    def _job_url(self, job_id: str, suffix: str = "") -> str:
        return f"{self._base}/api/music-clips/jobs/{quote(job_id, safe='')}{suffix}"

    async def _json(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        read_timeout: float = 30.0,
    ) -> tuple[int, dict[str, Any] | None]:
        """``(status, body)``; ``body`` is None for 304. Error statuses raise ApiAnswerError."""
        timeout = aiohttp.ClientTimeout(connect=CONNECT_TIMEOUT_S, sock_read=read_timeout)
        try:
            async with self._session.request(
                method,
                url,
                headers={**self._headers, **(headers or {})},
                json=body,
                timeout=timeout,
            ) as response:
                if response.status == 304:
                    return 304, None
                text = await response.text(errors="replace")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise ConnectionLost(_describe(exc)) from exc
        if response.status >= 400:
            raise _error_from(response.status, text)
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise ApiAnswerError(response.status, "NOT_JSON", text.strip()[:200], {})
        return response.status, parsed

    async def run_once(
        self, channel_id: str, body: Mapping[str, Any], idempotency_key: str | None
    ) -> dict[str, Any]:
        """Start a job: the 202 body (error answers raise ApiAnswerError)."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        url = f"{self._base}/api/music-clips/channels/{quote(channel_id, safe='')}/runOnce"
        _, answer = await self._json("POST", url, headers=headers, body=body or None)
        assert answer is not None
        return answer

    async def get_job(self, job_id: str, version: int | None = None) -> dict[str, Any] | None:
        """The job's view; with ``version``, wait for a newer one (None: nothing changed)."""
        headers: dict[str, str] = {}
        read_timeout = 30.0
        if version is not None:
            headers = {"If-None-Match": f'"{version}"', "Prefer": f"wait={LONG_POLL_WAIT_S}"}
            read_timeout = LONG_POLL_WAIT_S + 15.0
        _, view = await self._json(
            "GET", self._job_url(job_id), headers=headers, read_timeout=read_timeout
        )
        return view

    async def history(self, job_id: str) -> dict[str, Any]:
        _, body = await self._json("GET", self._job_url(job_id, "/history"))
        assert body is not None
        return body

    async def events(
        self, job_id: str, after_version: int = 0
    ) -> AsyncGenerator[dict[str, Any], None]:
        """The job's views from its SSE stream, newer than ``after_version``, until it ends.

        Raises ApiAnswerError when the server refuses the stream, ConnectionLost
        when it cannot be opened or breaks (an ``error`` event, silence, a cut
        connection, or an end before the job is done: the caller decides).
        """
        headers = {**self._headers, "Accept": "text/event-stream"}
        if after_version:
            headers["Last-Event-ID"] = str(after_version)
        timeout = aiohttp.ClientTimeout(connect=CONNECT_TIMEOUT_S, sock_read=SSE_SILENCE_S)
        try:
            async with self._session.get(
                self._job_url(job_id, "/events"), headers=headers, timeout=timeout
            ) as response:
                if response.status >= 400:
                    raise _error_from(response.status, await response.text(errors="replace"))
                kind, data = "message", []
                while True:
                    raw = await response.content.readline()
                    if not raw:
                        return
                    line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                    if line.startswith(":"):
                        continue  # a keep-alive comment
                    if line:
                        field, _, value = line.partition(":")
                        value = value.removeprefix(" ")
                        if field == "event":
                            kind = value
                        elif field == "data":
                            data.append(value)
                        continue
                    if data:
                        yield _event_view(kind, "\n".join(data))
                    kind, data = "message", []
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            raise ConnectionLost(_describe(exc)) from exc


def _event_view(kind: str, data: str) -> dict[str, Any]:
    try:
        view = json.loads(data)
    except ValueError:
        raise ConnectionLost("the event stream sent something that is not JSON") from None
    if kind == "error" or not isinstance(view, dict) or "version" not in view:
        code = view.get("error") if isinstance(view, dict) else None
        raise ConnectionLost(f"the event stream stopped with {code or 'an error'}")
    return view


async def sleep_backoff(attempt: int) -> None:
    """Wait before asking a lost server again: 0.5 s, 1 s, 2 s, then every 3 s."""
    await asyncio.sleep(min(0.5 * 2**attempt, 3.0))
