"""Reading what callers send: bounded bodies, strict runOnce params, conditional headers."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from typing import Any

from aiohttp import web

from clipjobs.app.ports import ParamOverrides

from ._errors import ApiError

__all__ = [
    "etag_matches",
    "last_event_id",
    "parse_json_object",
    "parse_limit",
    "parse_run_once",
    "prefer_wait",
    "read_body",
]

_STRING_FIELDS = {
    "prompt": "prompt",
    "style": "style",
    "title": "title",
    "model": "model",
    "negativeTags": "negative_tags",
}
_BOOL_FIELDS = {"customMode": "custom_mode", "instrumental": "instrumental"}
_PREFER_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*\"?(\d{1,6})\"?", re.I)


def _invalid(message: str, field: str) -> ApiError:
    return ApiError(400, "INVALID_REQUEST", message, field=field)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "PAYLOAD_TOO_LARGE", f"The request body is over {limit} bytes.")


async def read_body(request: web.Request, limit: int, timeout_s: float | None = None) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``limit``.

    Read from the stream, not ``request.read()``, so the limit is ours even
    when a parent app set another ``client_max_size``. A body still arriving
    after ``timeout_s`` is 408: a client trickling it would hold the
    connection as long as it liked.
    """
    length = request.content_length
    if length is not None and length > limit:
        raise _too_large(limit)
    data = bytearray()
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.content.iter_any():
                data += chunk
                if len(data) > limit:
                    raise _too_large(limit)
    except TimeoutError:
        raise ApiError(
            408,
            "REQUEST_TIMEOUT",
            f"The request body took longer than {timeout_s:g} s to arrive.",
            headers={"Connection": "close"},
        ) from None
    return bytes(data)


def _check_text(value: str, field: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _invalid(f"{field} is not valid Unicode text", field) from None
    if "\x00" in value:
        raise _invalid(f"{field} must not contain NUL characters", field)
    return value


def parse_json_object(raw: bytes, *, optional: bool) -> dict[str, Any] | None:
    """A JSON object from ``raw``; None for an empty body when that is allowed."""
    if not raw.strip():
        if optional:
            return None
        raise _invalid("A JSON object body is required.", "body")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise _invalid("The body is not valid JSON.", "body") from None
    if not isinstance(data, dict):
        raise _invalid("The body must be a JSON object.", "body")
    return data


def parse_run_once(body: dict[str, Any] | None) -> tuple[ParamOverrides, str | None]:
    """The generation overrides and the ``userId`` a runOnce body names (unknown keys ignored)."""
    if body is None:
        return ParamOverrides(), None
    user_id = body.get("userId")
    if user_id is not None:
        if not isinstance(user_id, str):
            raise _invalid("userId must be a string.", "userId")
        _check_text(user_id, "userId")
    values: dict[str, Any] = {}
    for name, attr, value in _given(body, _STRING_FIELDS, str, "a string"):
        values[attr] = _check_text(value, name)
    for _, attr, value in _given(body, _BOOL_FIELDS, bool, "true or false"):
        values[attr] = value
    return ParamOverrides(**values), user_id


def _given(
    body: dict[str, Any], fields: dict[str, str], kind: type, what: str
) -> Iterator[tuple[str, str, Any]]:
    """``(name, attribute, value)`` of each of ``fields`` the body gives (null: not given);
    a value not of ``kind`` is refused (``name must be {what}``).
    """
    for name, attr in fields.items():
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, kind):
            raise _invalid(f"{name} must be {what}.", name)
        yield name, attr, value


def parse_limit(raw: str | None, default: int) -> int:
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= 100:
        raise _invalid("limit must be a whole number from 1 to 100.", "limit")
    return int(raw)


def etag_matches(header: str | None, version: int) -> bool:
    """``If-None-Match`` names this version (weak tags and ``*`` included)."""
    if not header:
        return False
    for tag in header.split(","):
        tag = tag.strip()
        if tag == "*":
            return True
        if tag.startswith("W/"):
            tag = tag[2:]
        if tag.strip('"') == str(version):
            return True
    return False


def prefer_wait(header: str | None, cap: float) -> float:
    """Seconds asked for by ``Prefer: wait=N``, capped; 0 when absent."""
    if not header:
        return 0.0
    match = _PREFER_WAIT.search(header)
    if match is None:
        return 0.0
    return min(float(match.group(1)), cap)


def last_event_id(header: str | None) -> int:
    """The version a reconnecting SSE client has seen (0 when unknown or unreadable)."""
    if header is None:
        return 0
    header = header.strip()
    if not header.isascii() or not header.isdigit() or len(header) > 18:
        return 0
    return int(header)
