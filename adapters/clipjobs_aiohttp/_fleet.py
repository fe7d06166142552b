"""The fleet's routes (SPEC 10.3): every job the caller may see, its counts, its live feed,
and cancelling many at once.

Admins (``Identity.admin``) see every job; anyone else sees their own, whatever
they ask: the filter is pinned to them by :func:`clipjobs.domain.fleet.visible_to`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs
from aiohttp import web

from clipjobs.app.ports import Identity
from clipjobs.app.service import JobService
from clipjobs.domain.errors import ClipjobsError, JobAlreadyFinished, JobNotFound
from clipjobs.domain.fleet import BULK_LIMIT, MAX_PAGE, JobFilter, PageKey, matches, visible_to
from clipjobs.domain.i18n import Lang
from clipjobs.domain.stages import Stage
from clipjobs.domain.state import JobState

from ._errors import ApiError
from ._handlers import (
    _body,
    _encode,
    _json,
    _lang,
    _stale_after,
    _unless_closing,
    end_with_error,
    identify,
    open_event_stream,
    request_id,
)
from ._input import parse_json_object, read_body
from ._keys import CONFIG, SERVICE

__all__ = ["add_fleet_routes"]

_DEFAULT_LIMIT = 50
_FILTERS = ("stage", "channelId", "userId", "stale", "done", "createdAfter", "createdBefore")
_STAGE_NAMES = ", ".join(s.value for s in Stage)
#: What a cursor's signature is computed over, apart from webhook tokens.
_CURSOR_DOMAIN = "fleet-cursor\x1f"
_MAX_TEXT = 200
#: Jobs whose last sent version a fleet stream remembers (the oldest are forgotten).
_SENT_MEMORY = 10_000


def _bad(message: str, field: str) -> ApiError:
    return ApiError(400, "INVALID_REQUEST", message, field=field)


# --- input ----------------------------------------------------------------------


def _one(values: Sequence[Any], name: str) -> Any:
    if len(values) != 1:
        raise _bad(f"Send {name} at most once.", name)
    return values[0]


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value or len(value) > _MAX_TEXT:
        raise _bad(f"{name} must be a non-empty string of at most {_MAX_TEXT} characters.", name)
    return value


def _bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return bool(value == "true")
    raise _bad(f"{name} must be true or false.", name)


def _time(value: Any, name: str) -> datetime:
    text = _text(value, name)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise _bad(f"{name} must be an ISO 8601 time like 2026-03-01T12:00:00Z.", name) from None
    if when.tzinfo is None:
        raise _bad(f"{name} needs a time zone (Z or +hh:mm).", name)
    return when


def _stages(values: Iterable[Any]) -> tuple[Stage, ...]:
    stages: list[Stage] = []
    for value in values:
        for name in _text(value, "stage").split(","):
            try:
                stage = Stage(name.strip())
            except ValueError:
                raise _bad(
                    f"Unknown stage {name.strip()!r}; stages are {_STAGE_NAMES}.", "stage"
                ) from None
            if stage not in stages:
                stages.append(stage)
    return tuple(stages)


def parse_filter(
    given: Mapping[str, Sequence[Any]], identity: Identity, *, now: datetime, stale_after_s: float
) -> JobFilter:
    """The filter ``given`` (each name with its values) asks for, as the caller may apply it."""
    where = JobFilter()
    if "stage" in given:
        where = attrs.evolve(where, stages=_stages(given["stage"]))
    if "channelId" in given:
        where = attrs.evolve(
            where, channel_id=_text(_one(given["channelId"], "channelId"), "channelId")
        )
    if "userId" in given:
        user = _text(_one(given["userId"], "userId"), "userId")
        if not identity.admin and user != identity.user_id:
            raise ApiError(
                403, "FORBIDDEN", "Only admins may list other users' jobs.", field="userId"
            )
        where = attrs.evolve(where, user_id=user)
    if "stale" in given:
        if not _bool(_one(given["stale"], "stale"), "stale"):
            raise _bad("stale takes only true (leave it out for every job).", "stale")
        where = attrs.evolve(where, stale_before=now - timedelta(seconds=stale_after_s))
    if "done" in given:
        where = attrs.evolve(where, done=_bool(_one(given["done"], "done"), "done"))
    if "createdAfter" in given:
        after = _time(_one(given["createdAfter"], "createdAfter"), "createdAfter")
        where = attrs.evolve(where, created_after=after)
    if "createdBefore" in given:
        before = _time(_one(given["createdBefore"], "createdBefore"), "createdBefore")
        where = attrs.evolve(where, created_before=before)
    if (
        where.created_after is not None
        and where.created_before is not None
        and where.created_after >= where.created_before
    ):
        raise _bad("createdAfter must be earlier than createdBefore.", "createdAfter")
    return visible_to(where, identity.user_id, admin=identity.admin)


def _query(request: web.Request, allowed: Iterable[str]) -> dict[str, list[str]]:
    """The query string as names and values; a name this route does not know is refused."""
    known = set(allowed) | {"lang"}
    given: dict[str, list[str]] = {}
    for name, value in request.query.items():
        if name not in known:
            raise _bad(f"Unknown query parameter {name[:40]!r}.", name[:40])
        given.setdefault(name, []).append(value)
    given.pop("lang", None)
    return given


def _limit(given: dict[str, list[str]]) -> int:
    if "limit" not in given:
        return _DEFAULT_LIMIT
    raw = _one(given.pop("limit"), "limit")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise _bad(f"limit must be a whole number from 1 to {MAX_PAGE}.", "limit")
    return int(raw)


# --- the cursor: opaque and tamper-proof ------------------------------------------


def _sign(service: JobService, payload: str) -> str:
    return service.sign(_CURSOR_DOMAIN + payload)


def encode_cursor(service: JobService, key: PageKey) -> str:
    # Microseconds kept: the order is by the stored time, to the microsecond.
    data = json.dumps([key.created_at.isoformat(), key.job_id], separators=(",", ":"))
    payload = base64.urlsafe_b64encode(data.encode()).decode().rstrip("=")
    return f"{payload}.{_sign(service, payload)}"


def decode_cursor(service: JobService, cursor: str) -> PageKey:
    forged = _bad("cursor is not one this server gave out.", "cursor")
    payload, _, signature = cursor.partition(".")
    if not payload.isascii() or not signature.isascii():
        raise forged
    if not hmac.compare_digest(_sign(service, payload), signature):
        raise forged
    try:
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        when = datetime.fromisoformat(data[0])
        if when.tzinfo is None:
            raise ValueError("naive")
        return PageKey(when, str(data[1]))
    except (ValueError, TypeError, IndexError, KeyError, binascii.Error):
        raise forged from None


# --- the routes ---------------------------------------------------------------------


async def _item(request: web.Request, state: JobState, lang: Lang) -> dict[str, Any]:
    """A job as the fleet shows it: its GET body, and whose job it is (for admins' tables)."""
    body = await _body(request, state, lang)
    body["userId"] = state.user_id
    return body


async def list_fleet(request: web.Request) -> web.Response:
    """GET /api/music-clips/jobs — the jobs the caller may see, newest first, by keyset pages."""
    service = request.app[SERVICE]
    identity = await identify(request)
    given = _query(request, (*_FILTERS, "limit", "cursor"))
    limit = _limit(given)
    after = (
        decode_cursor(service, _one(given.pop("cursor"), "cursor")) if "cursor" in given else None
    )
    now, stale = service.now(), _stale_after(request)
    where = parse_filter(given, identity, now=now, stale_after_s=stale)
    found = await service.find_jobs(where, after=after, limit=limit + 1)
    page = found[:limit]
    next_cursor = encode_cursor(service, PageKey.of(page[-1])) if len(found) > limit else None
    lang, rid = _lang(request), request_id(request)
    jobs = [await _item(request, state, lang) for state in page]
    return _json(
        {"success": True, "ok": True, "jobs": jobs, "nextCursor": next_cursor, "requestId": rid},
        headers={"Cache-Control": "no-cache", "Vary": "Accept-Language"},
    )


async def stats(request: web.Request) -> web.Response:
    """GET /api/music-clips/stats — counts by stage, active and stale, over what the caller sees."""
    service = request.app[SERVICE]
    identity = await identify(request)
    now, stale_after = service.now(), _stale_after(request)
    where = parse_filter(_query(request, _FILTERS), identity, now=now, stale_after_s=stale_after)
    by_stage = await service.count_jobs(where)
    active = sum((await service.count_jobs(attrs.evolve(where, done=False))).values())
    stale_since = now - timedelta(seconds=stale_after)
    if where.stale_before is None:
        stale_where = attrs.evolve(where, stale_before=stale_since)
    else:
        stale_where = where
    stale = sum((await service.count_jobs(stale_where)).values())
    waiting = (await service.status()).waiting_by_user
    users_waiting = len(waiting) if identity.admin else int(waiting.get(identity.user_id, 0) > 0)
    return _json(
        {
            "success": True,
            "ok": True,
            "byStage": {stage.value: by_stage.get(stage, 0) for stage in Stage},
            "active": active,
            "stale": stale,
            "usersWaiting": users_waiting,
            "staleAfterSeconds": stale_after,
            "requestId": request_id(request),
        },
        headers={"Cache-Control": "no-cache"},
    )


async def _cancel_each(
    service: JobService, job_ids: Sequence[str], by: str, reason: str | None
) -> tuple[int, int]:
    """Cancel job by job through the service, each with its own ``JobCancelled``:
    ``(cancelled, skipped)``; a job that finished (or went) meanwhile is skipped.
    A store that stops answering stops the run (503): what was cancelled stays so.
    """
    cancelled = skipped = 0
    for job_id in job_ids:
        try:
            await service.cancel(job_id, by=by, reason=reason)
        except (JobAlreadyFinished, JobNotFound):
            skipped += 1
        else:
            cancelled += 1
    return cancelled, skipped


_BULK_KEYS = frozenset({*_FILTERS, "dryRun", "reason"})


async def bulk_cancel(request: web.Request) -> web.Response:
    """POST /api/music-clips/jobs/cancel — the list's filters in the body; at most 1,000 a call."""
    service, config = request.app[SERVICE], request.app[CONFIG]
    identity = await identify(request)
    raw = await read_body(request, config.max_body_bytes, config.body_timeout_s)
    body = parse_json_object(raw, optional=False) or {}
    for key in body:
        if key not in _BULK_KEYS:
            raise _bad(f"Unknown field {key[:40]!r}.", key[:40])
    dry_run = _bool(body.get("dryRun", False), "dryRun")
    reason = body.get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > 500):
        raise _bad("reason must be a string of at most 500 characters.", "reason")
    given: dict[str, Sequence[Any]] = {}
    for key in _FILTERS:
        if key in body:
            value = body[key]
            if key == "stage" and isinstance(value, list):
                given[key] = value
            else:
                given[key] = [value]
    if not given:
        raise _bad("Give at least one filter: a bulk cancel of everything is not allowed.", "stage")
    now = service.now()
    where = parse_filter(given, identity, now=now, stale_after_s=_stale_after(request))
    rid = request_id(request)
    # Finished jobs cannot be cancelled: only undone ones match (none if done=true was asked).
    undone = attrs.evolve(where, done=False) if where.done is not True else None
    if dry_run:
        total = sum((await service.count_jobs(undone)).values()) if undone else 0
        return _json(
            {
                "success": True,
                "ok": True,
                "dryRun": True,
                "matched": total,
                "limit": BULK_LIMIT,
                "more": total > BULK_LIMIT,
                "requestId": rid,
            }
        )
    found = await service.find_jobs(undone, limit=BULK_LIMIT + 1) if undone else []
    matched = [s.job_id for s in found[:BULK_LIMIT]]
    more = len(found) > BULK_LIMIT
    total = len(matched)
    cancelled, skipped = await _cancel_each(service, matched, identity.user_id, reason)
    return _json(
        {
            "success": True,
            "ok": True,
            "dryRun": False,
            "matched": total,
            "cancelled": cancelled,
            "skipped": skipped,
            "limit": BULK_LIMIT,
            "more": more,
            "requestId": rid,
        }
    )


async def fleet_events(request: web.Request) -> web.StreamResponse:
    """GET /api/music-clips/events — SSE of every change to a job the caller may see.

    Each ``job`` event's data is the job's GET body as it is now. Stale-ness is
    not a change (nothing happens to a stale job), so ``stale=true`` is not
    applied to the stream: a stale job that moves is sent, and a table drops
    it. When the store may have missed changes (PostgreSQL reconnected) a
    ``resync`` event tells the table to list again.
    """
    service, config = request.app[SERVICE], request.app[CONFIG]
    identity = await identify(request)
    now, stale_after = service.now(), _stale_after(request)
    where = parse_filter(_query(request, _FILTERS), identity, now=now, stale_after_s=stale_after)
    where = attrs.evolve(where, stale_before=None)
    lang = _lang(request)
    #: The version last sent per job: a commit is announced locally and, on PostgreSQL,
    #: again by the database; the second announcement of a version sends nothing.
    sent: dict[str, int] = {}
    with service.changes() as feed:
        response = await open_event_stream(request)
        try:
            await response.write(f"retry: {config.retry_after_s * 1000}\n\n".encode())
            while True:
                finished, result = await _unless_closing(request, feed.next(config.sse_keepalive_s))
                if not finished or result is None:
                    break
                ids, missed = result
                if missed:
                    await response.write(b"event: resync\ndata: {}\n\n")
                if not ids and not missed:
                    await response.write(b": keep-alive\n\n")
                for job_id in ids:
                    try:
                        state = await service.load(job_id)
                    except JobNotFound:
                        continue  # pruned since it changed
                    if not matches(where, state):
                        continue
                    if sent.get(job_id, 0) >= state.version:
                        continue
                    sent.pop(job_id, None)
                    sent[job_id] = state.version
                    if len(sent) > _SENT_MEMORY:
                        del sent[next(iter(sent))]
                    body = await _item(request, state, lang)
                    data = _encode(body)
                    await response.write(
                        f"id: {state.job_id}:{state.version}\nevent: job\ndata: {data}\n\n".encode()
                    )
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away
        except ClipjobsError:
            await end_with_error(request, response, "STORE_UNAVAILABLE")
    return response


def add_fleet_routes(app: web.Application, api: str) -> None:
    """The fleet's routes under ``api`` (``/api/music-clips``)."""
    router = app.router
    router.add_get(f"{api}/jobs", list_fleet)
    router.add_post(f"{api}/jobs/cancel", bulk_cancel)
    router.add_get(f"{api}/stats", stats)
    router.add_get(f"{api}/events", fleet_events, allow_head=False)
