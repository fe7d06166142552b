"""``POST …/jobs/{jobId}/cancel`` and ``POST …/jobs/{jobId}/retry`` (SPEC 10.2).

Only the owner may act: anyone else gets the same 404 as for reading. Bad
input (a body over 4 KiB, not a JSON object, an unknown ``from``, a reason
that is not text) is refused before anything changes.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ._errors import ApiError
from ._handlers import _body, _job_id, _json, _lang, _user, accepted, request_id
from ._input import parse_json_object, read_body
from ._keys import CONFIG, SERVICE

__all__ = ["MAX_ACTION_BODY", "cancel_job", "retry_job"]

#: The largest body a cancel or retry accepts (bytes).
MAX_ACTION_BODY = 4096


async def _action_body(request: web.Request, allowed: set[str]) -> dict[str, Any]:
    config = request.app[CONFIG]
    raw = await read_body(request, MAX_ACTION_BODY, config.body_timeout_s)
    body = parse_json_object(raw, optional=True) or {}
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(400, "INVALID_REQUEST", f"Unknown field {unknown[0]!r}.", field=unknown[0])
    return body


async def cancel_job(request: web.Request) -> web.Response:
    """POST /api/music-clips/jobs/{jobId}/cancel — 200 with the GET body."""
    service = request.app[SERVICE]
    user = await _user(request)
    job_id = _job_id(request)
    body = await _action_body(request, {"reason"})
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise ApiError(400, "INVALID_REQUEST", "reason must be a string.", field="reason")
    await service.get(job_id, user)  # only the owner: 404 otherwise
    state = await service.cancel(job_id, by=user, reason=reason)
    return _json(await _body(request, state, _lang(request)))


async def retry_job(request: web.Request) -> web.Response:
    """POST /api/music-clips/jobs/{jobId}/retry — 202 with runOnce's body for the new job."""
    service = request.app[SERVICE]
    user = await _user(request)
    job_id = _job_id(request)
    body = await _action_body(request, {"from"})
    mode = body.get("from", "start")
    if not isinstance(mode, str) or mode not in ("start", "clip"):
        raise ApiError(400, "INVALID_REQUEST", 'from must be "start" or "clip".', field="from")
    outcome = await service.retry(
        job_id,
        user,
        mode=mode,
        idempotency_key=request.headers.get("Idempotency-Key"),
        request_id=request_id(request),
    )
    return accepted(request, outcome, retry=True)
