"""The route handlers of SPEC section 4."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable
from typing import Any, TypeVar

from aiohttp import web

from clipjobs.app.ids import JOB_ID_PATTERN, new_request_id
from clipjobs.app.logs import current_request_id
from clipjobs.app.metrics import histogram_text
from clipjobs.app.ports import Identity
from clipjobs.app.service import ErrorCode, JobRequest, StartOutcome, Unauthorized
from clipjobs.domain.codec import format_ts
from clipjobs.domain.errors import ClipjobsError, JobNotFound, StoreError
from clipjobs.domain.i18n import Lang, accepted_message, pick_language
from clipjobs.domain.state import JobState

from ._errors import ApiError, translate
from ._input import (
    etag_matches,
    last_event_id,
    parse_json_object,
    parse_limit,
    parse_run_once,
    prefer_wait,
    read_body,
)
from ._kept import MEDIA_URLS
from ._keys import AUTHENTICATOR, CONFIG, LIFECYCLE, METRICS, OPENAPI, SERVICE
from ._notify_views import webhook_lines
from ._views import event_view, job_body, job_view

__all__ = [
    "get_job",
    "healthz",
    "history",
    "job_events",
    "list_jobs",
    "metrics",
    "openapi",
    "readyz",
    "run_once",
    "suno_webhook",
]

T = TypeVar("T")

#: The route name ``Location`` headers are built from (prefix-aware when mounted).
JOB_ROUTE = "clipjobs-job"


def request_id(request: web.Request) -> str:
    rid = current_request_id.get()
    return rid if rid is not None else new_request_id(request.app[SERVICE].now())


#: ``json.dumps(body, ensure_ascii=False)`` without building an encoder per answer.
_encode = json.JSONEncoder(ensure_ascii=False).encode


def _json(
    body: dict[str, Any], *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        text=_encode(body),
        content_type="application/json",
        headers=headers,
    )


def _unauthorized() -> ApiError:
    return ApiError(
        401,
        "UNAUTHORIZED",
        "A valid Authorization: Bearer token is required.",
        headers={"WWW-Authenticate": "Bearer"},
    )


async def identify(request: web.Request) -> Identity:
    """Who the bearer token belongs to; ``x-user-id`` must agree.

    Every authenticated route starts here, so what is refused here is refused
    everywhere: two ``Authorization`` headers (which one would count?), a token
    that is not text, a second ``x-user-id``.
    """
    headers = request.headers
    given = headers.getall("Authorization", ())
    if len(given) != 1:
        raise _unauthorized()
    scheme, _, token = given[0].partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or not _is_text(token):
        raise _unauthorized()
    found = await request.app[AUTHENTICATOR].authenticate(token)
    if found is None:
        raise _unauthorized()
    identity = found if isinstance(found, Identity) else Identity(found)
    claimed = headers.getall("x-user-id", ())
    if len(claimed) > 1:
        raise ApiError(400, "INVALID_REQUEST", "Send x-user-id at most once.", field="x-user-id")
    if claimed and claimed[0] != identity.user_id:
        raise ApiError(403, "FORBIDDEN", "x-user-id does not match the token's user.")
    return identity


async def _user(request: web.Request) -> str:
    """The caller's user id (see :func:`identify`)."""
    return (await identify(request)).user_id


async def _reader(request: web.Request, identity: Identity, job_id: str) -> str:
    """Whom to read ``job_id`` as: the caller, or for an admin the job's owner (SPEC 10.3)."""
    if identity.admin:
        with contextlib.suppress(JobNotFound):
            return (await request.app[SERVICE].load(job_id)).user_id
    return identity.user_id


def _is_text(value: str) -> bool:
    """Not carrying lone surrogates: header bytes that were not UTF-8 decode to those."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _lang(request: web.Request) -> Lang:
    # No query string (most requests): no query to parse.
    lang = request.query.get("lang") if request.query_string else None
    return pick_language(request.headers.get("Accept-Language"), lang)


def _job_id(request: web.Request) -> str:
    job_id = request.match_info["job_id"]
    if not JOB_ID_PATTERN.match(job_id):
        # Not an id we could have issued: no store read needed to say so.
        raise ApiError(404, "JOB_NOT_FOUND", "Job not found")
    return job_id


def _stale_after(request: web.Request) -> float:
    configured = request.app[CONFIG].stale_after_s
    return configured if configured is not None else request.app[SERVICE].config.stale_after_s


async def _body(request: web.Request, state: JobState, lang: Lang) -> dict[str, Any]:
    service = request.app[SERVICE]
    body = job_body(
        state,
        lang=lang,
        now=service.now(),
        stale_after_s=_stale_after(request),
        request_id=request_id(request),
        queue=await service.queue_position(state),
        media_url=request.app.get(MEDIA_URLS),
    )
    body["retryable"] = service.retryable(state)  # no while Suno still has 0 credits
    return body


async def _unless_closing(request: web.Request, work: Awaitable[T]) -> tuple[bool, T | None]:
    """Await ``work`` unless the app shuts down first: ``(finished, result)``."""
    task = asyncio.ensure_future(work)
    stop = asyncio.ensure_future(request.app[LIFECYCLE].closing.wait())
    try:
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, stop):
            pending.cancel()
        await asyncio.gather(task, stop, return_exceptions=True)
    if task.cancelled():
        return False, None
    return True, task.result()  # re-raises what the work raised


# --- runOnce -----------------------------------------------------------------


async def run_once(request: web.Request) -> web.Response:
    """POST /api/music-clips/channels/{channelId}/runOnce"""
    service, config = request.app[SERVICE], request.app[CONFIG]
    user = await _user(request)
    raw = await read_body(request, config.max_body_bytes, config.body_timeout_s)
    body = parse_json_object(raw, optional=True)
    overrides, body_user = parse_run_once(body)
    if body_user is not None and body_user != user:
        raise ApiError(403, "FORBIDDEN", "userId does not match the token's user.")
    outcome = await service.start_job(
        JobRequest(
            channel_id=request.match_info["channel_id"],
            user_id=user,
            overrides=overrides,
            idempotency_key=request.headers.get("Idempotency-Key"),
            request_id=request_id(request),
        )
    )
    return accepted(request, outcome)


def accepted(request: web.Request, outcome: StartOutcome, *, retry: bool = False) -> web.Response:
    """The answer to a started job (runOnce, or a retry's new job: ``retryOf`` too): 202
    with where to read it, or the error it failed with at once (400 no callback URL, 402
    no Suno credits).
    """
    job = outcome.job
    failed = outcome.failed_at_once
    if failed == ErrorCode.CALLBACK_URL_NOT_CONFIGURED:
        raise ApiError(400, failed, job.error_message or failed, jobId=job.job_id)
    if failed == ErrorCode.SUNO_NO_CREDITS:
        raise ApiError(402, failed, job.error_message or failed, credits=0, jobId=job.job_id)
    body = {
        "success": True,
        "ok": True,
        "jobId": job.job_id,
        "channelId": job.channel_id,
        "stage": job.stage.value,
        "createdAt": format_ts(job.created_at),
        "message": accepted_message(_lang(request)),
    }
    if retry:
        body["retryOf"] = job.retry_of
    body["requestId"] = request_id(request)
    location = str(request.app.router[JOB_ROUTE].url_for(job_id=job.job_id))
    retry_after = str(request.app[CONFIG].retry_after_s)
    return _json(body, status=202, headers={"Location": location, "Retry-After": retry_after})


# --- reading jobs --------------------------------------------------------------


def _job_headers(request: web.Request, state: JobState) -> dict[str, str]:
    headers = {"ETag": f'"{state.version}"', "Cache-Control": "no-cache", "Vary": "Accept-Language"}
    if not state.done:
        headers["Retry-After"] = str(request.app[CONFIG].retry_after_s)
    return headers


async def get_job(request: web.Request) -> web.StreamResponse:
    """GET /api/music-clips/jobs/{jobId} — with ETag, 304 and ``Prefer: wait=N``."""
    service, config = request.app[SERVICE], request.app[CONFIG]
    identity = await identify(request)
    job_id = _job_id(request)
    user = await _reader(request, identity, job_id)
    state = await service.get(job_id, user)
    if_none_match = request.headers.get("If-None-Match")
    if etag_matches(if_none_match, state.version):
        wait = prefer_wait(request.headers.get("Prefer"), config.long_poll_max_s)
        if wait > 0 and not state.done:
            finished, changed = await _unless_closing(
                request, service.watch(job_id, user, state.version, wait)
            )
            if finished and changed is not None:
                state = changed
        if etag_matches(if_none_match, state.version):
            return web.Response(status=304, headers=_job_headers(request, state))
    body = await _body(request, state, _lang(request))
    return _json(body, headers=_job_headers(request, state))


async def history(request: web.Request) -> web.Response:
    """GET /api/music-clips/jobs/{jobId}/history — the event log, owner only."""
    identity = await identify(request)
    job_id = _job_id(request)
    user = await _reader(request, identity, job_id)
    events = await request.app[SERVICE].history(job_id, user)
    body = {
        "success": True,
        "ok": True,
        "jobId": job_id,
        "events": [event_view(e) for e in events],
        "requestId": request_id(request),
    }
    webhooks = await webhook_lines(request.app, job_id)  # attempts to tell subscribers
    if webhooks is not None:
        body["webhooks"] = webhooks
    return _json(body)


async def list_jobs(request: web.Request) -> web.Response:
    """GET /api/music-clips/channels/{channelId}/jobs — the caller's recent jobs there."""
    service, config = request.app[SERVICE], request.app[CONFIG]
    user = await _user(request)
    channel_id = request.match_info["channel_id"]
    limit = parse_limit(request.query.get("limit"), config.list_limit)
    jobs = await service.list_jobs(user, channel_id, limit)
    lang, now, stale = _lang(request), service.now(), _stale_after(request)
    return _json(
        {
            "success": True,
            "ok": True,
            "channelId": channel_id,
            "jobs": [
                job_view(
                    j,
                    lang=lang,
                    now=now,
                    stale_after_s=stale,
                    queue=await service.queue_position(j),
                    media_url=request.app.get(MEDIA_URLS),
                )
                for j in jobs
            ],
            "requestId": request_id(request),
        }
    )


# --- SSE -------------------------------------------------------------------------


async def open_event_stream(request: web.Request) -> web.StreamResponse:
    """A prepared ``text/event-stream`` answer, neither cached nor buffered by proxies."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
            "X-Request-Id": request_id(request),
        }
    )
    await response.prepare(request)
    return response


async def end_with_error(request: web.Request, response: web.StreamResponse, code: str) -> None:
    """End a stream with an ``error`` event saying ``code``, unless the client has gone."""
    body = {"success": False, "ok": False, "error": code, "requestId": request_id(request)}
    with contextlib.suppress(ConnectionError):
        await response.write(f"event: error\ndata: {json.dumps(body)}\n\n".encode())
        await response.write_eof()


async def job_events(request: web.Request) -> web.StreamResponse:
    """GET /api/music-clips/jobs/{jobId}/events — one SSE event per change until done.

    While the job waits for its turn at Suno its place in the queue moves
    without a new version: the stream looks again every ``sse_queue_refresh_s``
    and sends the body again (same ``id``) when the place or the wait changed.
    """
    service, config = request.app[SERVICE], request.app[CONFIG]
    identity = await identify(request)
    job_id = _job_id(request)
    user = await _reader(request, identity, job_id)
    lang = _lang(request)
    state = await service.get(job_id, user)
    sent = last_event_id(request.headers.get("Last-Event-ID"))
    if sent > state.version:
        # An id this job never had (a typo, another server's id): waiting for the job
        # to reach it would outlive the job. Start over; each event is the whole state.
        sent = 0
    response = await open_event_stream(request)
    try:
        await response.write(f"retry: {config.retry_after_s * 1000}\n\n".encode())
        shown: object = None  # the queue place last sent
        quiet = 0.0  # seconds since the last write
        while True:
            queue = await service.queue_position(state)
            if state.version > sent or (queue is not None and queue != shown):
                data = _encode(await _body(request, state, lang))
                await response.write(f"id: {state.version}\nevent: job\ndata: {data}\n\n".encode())
                sent, shown, quiet = state.version, queue, 0.0
            elif quiet >= config.sse_keepalive_s:
                await response.write(b": keep-alive\n\n")
                quiet = 0.0
            if state.done:
                break
            wait = config.sse_keepalive_s - quiet
            if queue is not None:
                wait = min(wait, config.sse_queue_refresh_s)
            finished, changed = await _unless_closing(
                request, service.watch(job_id, user, sent, wait)
            )
            if not finished or changed is None:
                break
            if changed.version == state.version:
                quiet += wait
            state = changed
        await response.write_eof()
    except ConnectionError:
        pass  # the client went away: nothing left to tell it
    except ClipjobsError as exc:
        error = translate(exc, config.retry_after_s)
        code = error.code if error is not None else "INTERNAL_ERROR"
        await end_with_error(request, response, code)
    return response


# --- the Suno webhook -------------------------------------------------------------


async def suno_webhook(request: web.Request) -> web.Response:
    """POST /api/webhooks/suno/music?job=…&token=… — the per-job token is the auth."""
    service, config = request.app[SERVICE], request.app[CONFIG]
    job_id = request.query.get("job")
    token = request.query.get("token")
    raw = await read_body(request, config.max_body_bytes, config.body_timeout_s)
    try:
        payload = parse_json_object(raw, optional=False)
    except ApiError:
        # Tell forgers nothing about the body before they prove the token.
        if not job_id or not service.verify_callback_token(job_id, token):
            raise ApiError(401, "UNAUTHORIZED", "Invalid or missing webhook token.") from None
        raise
    assert payload is not None
    try:
        result = await service.handle_callback(job_id, token, payload)
    except Unauthorized:
        raise ApiError(401, "UNAUTHORIZED", "Invalid or missing webhook token.") from None
    return _json(
        {
            "code": 200,
            "msg": "success",
            "success": True,
            "ok": True,
            "result": result.value,
            "requestId": request_id(request),
        }
    )


# --- operations --------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    """GET /healthz — the process answers."""
    return _json({"success": True, "ok": True, "status": "ok", "requestId": request_id(request)})


async def readyz(request: web.Request) -> web.Response:
    """GET /readyz — the store answers; the live workers, their leases, and the Suno budget."""
    service = request.app[SERVICE]
    try:
        status = await service.status()
    except ClipjobsError:
        raise ApiError(503, "STORE_UNAVAILABLE", "The job store does not answer.") from None
    now = service.now()
    held: dict[str, dict[str, int]] = {}
    for lease in status.leases:
        if lease.until > now:
            mine = held.setdefault(lease.owner, {})
            mine[lease.work.value] = mine.get(lease.work.value, 0) + 1
    budget = status.budget
    return _json(
        {
            "success": True,
            "ok": True,
            "status": "ready",
            "workers": [
                {
                    "workerId": w.worker_id,
                    "host": w.host,
                    "pid": w.pid,
                    "startedAt": format_ts(w.started_at),
                    "heartbeatAt": format_ts(w.heartbeat_at),
                    "secondsSinceHeartbeat": max(0, int((now - w.heartbeat_at).total_seconds())),
                    "leases": held.get(w.worker_id, {}),
                }
                for w in status.workers
            ],
            "suno": {
                "callsLast10s": budget.calls_in_window,
                "limit": budget.limit,
                "windowSeconds": budget.window_s,
                "queued": status.queued,
                "usersWaiting": len(status.waiting_by_user),
                "pausedUntil": format_ts(budget.paused_until) if budget.paused_until else None,
                "credits": status.credits,
            },
            "requestId": request_id(request),
        }
    )


#: Buckets of the "jobs waiting per user" histogram.
_PER_USER_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 500, 1000, 10_000)


async def metrics(request: web.Request) -> web.Response:
    """GET /metrics — Prometheus text, with gauges read off the store when it answers."""
    service = request.app[SERVICE]
    gauges: dict[str, float] = {}
    extra = ""
    with contextlib.suppress(StoreError):  # metrics stay readable while the database is down
        gauges["clipjobs_active_jobs"] = await service.count_active()
        status = await service.status()
        gauges["clipjobs_workers"] = len(status.workers)
        gauges["clipjobs_send_queue_jobs"] = status.queued
        gauges["clipjobs_send_queue_users"] = len(status.waiting_by_user)
        gauges["clipjobs_suno_calls_in_window"] = status.budget.calls_in_window
        gauges["clipjobs_suno_call_limit"] = status.budget.limit
        gauges["clipjobs_suno_paused"] = 1 if status.budget.paused_until else 0
        extra = histogram_text(
            "clipjobs_send_queue_jobs_per_user",
            "Jobs waiting for a Suno generate call, per user that has any (no user label).",
            status.waiting_by_user.values(),
            _PER_USER_BUCKETS,
        )
    return web.Response(
        body=(request.app[METRICS].render(gauges=gauges) + extra).encode(),
        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
    )


async def openapi(request: web.Request) -> web.Response:
    """GET /api/music-clips/openapi.json"""
    return _json(request.app[OPENAPI])
