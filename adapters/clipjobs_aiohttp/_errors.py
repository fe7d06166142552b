"""Error answers: the one place where exceptions become HTTP statuses and bodies.

Every error, ours or aiohttp's (404 of an unknown route, 405, 413) or an
unexpected exception, leaves as ``{"success": false, "ok": false, "error":
CODE, "message": ..., "requestId": ...}``; a traceback never does.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from clipjobs.domain.errors import (
    ConcurrencyError,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    InvalidRequest,
    JobAlreadyFinished,
    JobAlreadyRunning,
    JobNotFound,
    JobNotRetryable,
    StoreUnavailable,
    TooManyJobs,
)

__all__ = ["MAX_MESSAGE", "ApiError", "error_response", "translate"]

_HTTP_CODES = {
    400: "INVALID_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}


class ApiError(Exception):
    """An error answer a handler decided on: status, code, message and extra body fields."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.extra = extra


def translate(exc: BaseException, retry_after_s: int) -> ApiError | None:
    """The answer for a known exception; None for an unexpected one (a 500)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, web.HTTPException):
        code = _HTTP_CODES.get(exc.status, f"HTTP_{exc.status}")
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        return ApiError(exc.status, code, exc.reason, headers=headers)
    if isinstance(exc, InvalidRequest):
        error = ApiError(400, "INVALID_REQUEST", str(exc))
        if exc.field:
            error.extra["field"] = exc.field
        return error
    if isinstance(exc, JobNotFound):
        return ApiError(404, "JOB_NOT_FOUND", str(exc))
    if isinstance(exc, JobAlreadyRunning):
        return ApiError(409, "JOB_ALREADY_RUNNING", str(exc), jobId=exc.job_id)
    if isinstance(exc, JobAlreadyFinished):
        return ApiError(409, "JOB_ALREADY_FINISHED", str(exc), stage=exc.stage)
    if isinstance(exc, JobNotRetryable):
        return ApiError(409, "JOB_NOT_RETRYABLE", str(exc))
    if isinstance(exc, TooManyJobs):
        return ApiError(
            429,
            "TOO_MANY_ACTIVE_JOBS",
            str(exc),
            headers={"Retry-After": str(exc.retry_after_s)},
            active=exc.active,
        )
    if isinstance(exc, IdempotencyKeyReused):
        return ApiError(422, "IDEMPOTENCY_KEY_REUSED", str(exc), jobId=exc.job_id)
    if isinstance(exc, IdempotencyKeyInUse):
        return ApiError(
            409,
            "IDEMPOTENCY_KEY_IN_USE",
            str(exc),
            headers={"Retry-After": str(retry_after_s)},
            jobId=exc.job_id,
        )
    if isinstance(exc, StoreUnavailable | ConcurrencyError):
        return ApiError(
            503,
            "STORE_UNAVAILABLE",
            "The job store is unavailable; try again shortly.",
            headers={"Retry-After": str(retry_after_s)},
        )
    return None


#: Messages are ours, but some quote what a caller sent: never more than this of it.
MAX_MESSAGE = 200
_CUT_MARK = "…[truncated]"


def _clamp(message: str) -> str:
    if len(message) <= MAX_MESSAGE:
        return message
    return message[: MAX_MESSAGE - len(_CUT_MARK)] + _CUT_MARK


def error_response(error: ApiError, request_id: str) -> web.Response:
    body: dict[str, Any] = {
        "success": False,
        "ok": False,
        "error": error.code,
        "message": _clamp(error.message),
        **error.extra,
        "requestId": request_id,
    }
    return web.Response(
        status=error.status,
        text=json.dumps(body, ensure_ascii=False),
        content_type="application/json",
        headers=error.headers,
    )
