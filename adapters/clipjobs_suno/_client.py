"""The client of sunoapi.org: the ``SunoClient`` port over one ``aiohttp.ClientSession``.

Every aiohttp exception and every answer outside the documented shape is
translated into the ``clipjobs.domain.errors`` Suno tree in one place
(:meth:`SunoApiClient._call`). ``maybe_sent`` on a transient error tells the
sender whether Suno may have acted on a generate request: credits must not
be spent twice.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from typing import Any, Final

import aiohttp
from attrs import frozen

from clipjobs.app.metrics import Metrics
from clipjobs.domain.errors import (
    ConfigError,
    InvalidRequest,
    SunoError,
    SunoNoCredits,
    SunoProtocolError,
    SunoRateLimited,
    SunoRejected,
    SunoTransient,
)
from clipjobs.domain.events import GenerationParams, Observation, TimestampedLyrics

from ._limits import check_generate_body, generate_body
from ._parse import (
    parse_callback,
    parse_record_info,
    parse_timestamped_lyrics,
    require_id,
    require_mapping,
)

__all__ = ["DEFAULT_BASE_URL", "SunoApiClient", "SunoTimeouts"]

DEFAULT_BASE_URL: Final = "https://api.sunoapi.org"

_log = logging.getLogger("clipjobs.pipeline.suno")

_GENERATE = "generate"
_RECORD_INFO = "record_info"
_CREDITS = "credits"
_LYRICS = "timestamped_lyrics"

# A proxy in front of Suno answering these may have forwarded the request.
_GATEWAY_MAYBE_SENT = frozenset({502, 504})


@frozen
class SunoTimeouts:
    """Seconds each call may take in total, and the connect part of it."""

    generate: float = 30.0
    record_info: float = 15.0
    credits: float = 5.0
    timestamped_lyrics: float = 15.0
    connect: float = 5.0


class _Secret:
    """Holds the API key so that no repr, str or traceback local shows it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__


class SunoApiClient:
    """sunoapi.org's generate, record-info, credit and timestamped-lyrics calls, codes mapped.

    The session is the caller's (opened and closed by it); the client holds
    nothing that needs closing.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        api_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeouts: SunoTimeouts | None = None,
        metrics: Metrics | None = None,
        max_body_bytes: int = 1 << 20,
    ) -> None:
        if not api_key or not api_key.strip():
            raise ConfigError("SUNO_API_KEY is empty")
        self._session = session
        self._key = _Secret(api_key.strip())
        self.base_url = base_url.rstrip("/")
        self.timeouts = timeouts or SunoTimeouts()
        self._metrics = metrics
        self._max_body = max_body_bytes

    def __repr__(self) -> str:
        return f"SunoApiClient(base_url={self.base_url!r})"

    # --- the port ------------------------------------------------------------

    def validate(self, params: GenerationParams) -> None:
        problem = check_generate_body(generate_body(params, ""), need_callback=False)
        if problem is not None:
            raise InvalidRequest(problem.message, field=problem.field)

    async def generate(self, params: GenerationParams, callback_url: str) -> str:
        body = generate_body(params, callback_url)
        problem = check_generate_body(body)
        if problem is not None:
            # Nothing was sent: Suno would have answered the same, and no credit is at stake.
            raise SunoRejected(problem.message, code=problem.code)
        data = await self._call(
            _GENERATE, "POST", "/api/v1/generate", self.timeouts.generate, json_body=body
        )
        return require_id(require_mapping(data, "generate data").get("taskId"), "data.taskId")

    async def record_info(self, task_id: str) -> Observation:
        data = await self._call(
            _RECORD_INFO,
            "GET",
            "/api/v1/generate/record-info",
            self.timeouts.record_info,
            params={"taskId": task_id},
        )
        return parse_record_info(data, task_id)

    async def credits(self) -> int:
        data = await self._call(_CREDITS, "GET", "/api/v1/generate/credit", self.timeouts.credits)
        if isinstance(data, bool) or not isinstance(data, int | float):
            raise SunoProtocolError(f"credit data is {type(data).__name__}, not a number")
        if not math.isfinite(data) or data < 0:
            raise SunoProtocolError("credit data is not a non-negative number")
        return int(data)

    async def timestamped_lyrics(self, task_id: str, audio_id: str) -> TimestampedLyrics:
        data = await self._call(
            _LYRICS,
            "POST",
            "/api/v1/generate/get-timestamped-lyrics",
            self.timeouts.timestamped_lyrics,
            json_body={"taskId": task_id, "audioId": audio_id},
        )
        return parse_timestamped_lyrics(data)

    def parse_callback(self, payload: Mapping[str, Any]) -> Observation:
        return parse_callback(payload)

    # --- the one place aiohttp meets the error tree ---------------------------

    async def _call(
        self,
        endpoint: str,
        method: str,
        path: str,
        timeout: float,
        *,
        json_body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> object:
        headers = {
            "Authorization": f"Bearer {self._key.reveal()}",
            "Accept": "application/json",
        }
        started = time.monotonic()
        try:
            async with self._session.request(
                method,
                self.base_url + path,
                json=json_body,
                params=params,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=self.timeouts.connect),
                allow_redirects=False,
            ) as response:
                status = response.status
                raw = await self._read(response)
        except SunoError:
            self._count(endpoint, "error")
            raise
        except aiohttp.InvalidURL as exc:
            self._count(endpoint, "error")
            raise SunoRejected(f"Suno {endpoint}: invalid URL {self.base_url + path}") from exc
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            # The connection was never made: nothing reached Suno.
            self._count(endpoint, "error")
            raise SunoTransient(
                self._redact(f"Suno {endpoint}: cannot connect ({type(exc).__name__}: {exc})"),
                maybe_sent=False,
            ) from exc
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            # The request may have been written before the answer was lost.
            self._count(endpoint, "error")
            kind = "no answer in time" if isinstance(exc, TimeoutError) else "connection lost"
            raise SunoTransient(
                self._redact(f"Suno {endpoint}: {kind} ({type(exc).__name__}: {exc})"),
                maybe_sent=True,
            ) from exc
        elapsed_ms = (time.monotonic() - started) * 1000
        return self._answer(endpoint, status, raw, elapsed_ms)

    async def _read(self, response: aiohttp.ClientResponse) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(1 << 16):
            size += len(chunk)
            if size > self._max_body:
                raise SunoProtocolError(f"answer is larger than {self._max_body} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def _answer(self, endpoint: str, status: int, raw: bytes, elapsed_ms: float) -> object:
        envelope = _envelope(raw)
        body_code = envelope.get("code") if envelope is not None else None
        if isinstance(body_code, bool) or not isinstance(body_code, int):
            body_code = None
        message = envelope.get("msg") if envelope is not None else None
        if not isinstance(message, str) or not message.strip():
            message = None
        if not 200 <= status < 300:
            code = body_code if body_code is not None and body_code != 200 else status
            self._count(endpoint, str(code))
            _log.debug("suno %s: HTTP %s code %s in %.0f ms", endpoint, status, code, elapsed_ms)
            raise self._error(endpoint, code, message or f"HTTP {status}", http_status=status)
        if envelope is None or body_code is None:
            self._count(endpoint, str(status))
            raise SunoProtocolError(
                f"Suno {endpoint}: the answer is not a {{code, msg, data}} object"
            )
        self._count(endpoint, str(body_code))
        _log.debug("suno %s: code %s in %.0f ms", endpoint, body_code, elapsed_ms)
        if body_code != 200:
            raise self._error(endpoint, body_code, message or "no message", http_status=status)
        if "data" not in envelope:
            raise SunoProtocolError(f"Suno {endpoint}: the answer has no data")
        return envelope["data"]

    def _error(self, endpoint: str, code: int, message: str, *, http_status: int) -> SunoError:
        text = self._redact(f"Suno {endpoint}: {message[:300]} (code {code})")
        if code == 429:
            return SunoNoCredits(text, code=code)
        if code in (405, 430):
            return SunoRateLimited(text, code=code, maybe_sent=False)
        if code in (408, 455) or 500 <= code <= 599:
            maybe_sent = endpoint == _GENERATE and http_status in _GATEWAY_MAYBE_SENT
            return SunoTransient(text, code=code, maybe_sent=maybe_sent)
        if 400 <= code <= 499:
            return SunoRejected(text, code=code)
        return SunoProtocolError(text, code=code)

    def _redact(self, text: str) -> str:
        # A hostile or buggy server may echo the Authorization header back.
        return text.replace(self._key.reveal(), "***")

    def _count(self, endpoint: str, code: str) -> None:
        if self._metrics is not None:
            self._metrics.inc("clipjobs_suno_calls_total", endpoint=endpoint, code=code)


def _envelope(raw: bytes) -> Mapping[str, Any] | None:
    try:
        decoded = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return decoded if isinstance(decoded, dict) else None
