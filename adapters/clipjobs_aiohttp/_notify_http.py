"""The subscription routes (SPEC 10.5): make, list and remove webhooks, see their attempts.

``add_subscriptions(app, store, ...)`` adds them to an app from ``create_app``.
The secret is in the 201 answer to POST and nowhere else: not in GET, not in
a log line (the request log prints method, path and status only).
"""

from __future__ import annotations

import base64
import re
import secrets
from typing import Any

from aiohttp import web

from clipjobs.app.notify import EVENT_TYPES, NotifyStore, Subscription, TooManySubscriptions
from clipjobs.domain.codec import format_ts

from ._errors import ApiError
from ._handlers import _json, _user, request_id
from ._input import parse_json_object, parse_limit, read_body
from ._keys import CONFIG, SERVICE
from ._notify_guard import Resolve, UrlRefused, check_url, system_resolve
from ._notify_views import NOTIFY, NotifyApi, attempt_view

__all__ = ["add_subscriptions", "new_webhook_secret"]

_API = "/api/music-clips/subscriptions"
_ID = re.compile(r"sub_[0-9a-f]{24}")
_MAX_BODY = 8 * 1024


def new_webhook_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def add_subscriptions(
    app: web.Application,
    store: NotifyStore,
    *,
    max_subscriptions: int = 10,
    allow_private: bool = False,
    resolve: Resolve | None = None,
) -> None:
    """Serve the subscription routes on ``app`` (made by ``create_app``)."""
    app[NOTIFY] = NotifyApi(store, max_subscriptions, allow_private, resolve or system_resolve)
    app.router.add_post(_API, create_subscription)
    app.router.add_get(_API, list_subscriptions)
    app.router.add_delete(f"{_API}/{{subscription_id}}", delete_subscription)
    app.router.add_get(f"{_API}/{{subscription_id}}/deliveries", list_deliveries)


def _view(sub: Subscription) -> dict[str, Any]:
    return {
        "id": sub.id,
        "url": sub.url,
        "events": list(sub.events),
        "createdAt": format_ts(sub.created_at),
    }


def _bad(code: str, message: str, field: str) -> ApiError:
    return ApiError(400, code, message, field=field)


def _events(body: dict[str, Any]) -> tuple[str, ...]:
    given = body.get("events")
    if not isinstance(given, list) or not given or not all(isinstance(e, str) for e in given):
        raise _bad(
            "INVALID_REQUEST",
            "events must be a non-empty list of event types: " + ", ".join(EVENT_TYPES),
            "events",
        )
    unknown = sorted({e for e in given if e not in EVENT_TYPES})
    if unknown:
        raise _bad(
            "UNKNOWN_EVENT_TYPE",
            f"Unknown event types (known: {', '.join(EVENT_TYPES)}): {', '.join(unknown)}",
            "events",
        )
    return tuple(e for e in EVENT_TYPES if e in given)


async def create_subscription(request: web.Request) -> web.Response:
    """POST /api/music-clips/subscriptions ``{url, events}`` → 201 with the secret, once."""
    api = request.app[NOTIFY]
    user = await _user(request)
    raw = await read_body(request, _MAX_BODY, request.app[CONFIG].body_timeout_s)
    body = parse_json_object(raw, optional=False)
    assert body is not None
    url = body.get("url")
    if not isinstance(url, str) or not url.strip():
        raise _bad("INVALID_URL", "url must be an https:// URL.", "url")
    events = _events(body)
    try:
        url = await check_url(url.strip(), allow_private=api.allow_private, resolve=api.resolve)
    except UrlRefused as refused:
        raise _bad(refused.code, refused.message, "url") from None
    sub = Subscription(
        id=f"sub_{secrets.token_hex(12)}",
        user_id=user,
        url=url,
        events=events,
        secret=new_webhook_secret(),
        created_at=request.app[SERVICE].now(),
    )
    try:
        await api.store.add_subscription(sub, limit=api.max_subscriptions)
    except TooManySubscriptions as exc:
        raise _bad("TOO_MANY_SUBSCRIPTIONS", str(exc), "url") from None
    answer = {"success": True, "ok": True, **_view(sub), "secret": sub.secret}
    answer["requestId"] = request_id(request)
    return _json(answer, status=201, headers={"Cache-Control": "no-store"})


async def list_subscriptions(request: web.Request) -> web.Response:
    """GET /api/music-clips/subscriptions — the caller's, without secrets."""
    api = request.app[NOTIFY]
    user = await _user(request)
    subs = await api.store.list_subscriptions(user)
    return _json(
        {
            "success": True,
            "ok": True,
            "subscriptions": [_view(s) for s in subs],
            "requestId": request_id(request),
        }
    )


async def _owned(request: web.Request, user: str) -> str:
    sub_id = request.match_info["subscription_id"]
    if _ID.fullmatch(sub_id):
        subs = await request.app[NOTIFY].store.list_subscriptions(user)
        if any(s.id == sub_id for s in subs):
            return sub_id
    raise ApiError(404, "SUBSCRIPTION_NOT_FOUND", "Subscription not found.")


async def delete_subscription(request: web.Request) -> web.Response:
    """DELETE /api/music-clips/subscriptions/{id} — pending deliveries go with it."""
    api = request.app[NOTIFY]
    user = await _user(request)
    sub_id = request.match_info["subscription_id"]
    if not _ID.fullmatch(sub_id) or not await api.store.delete_subscription(user, sub_id):
        raise ApiError(404, "SUBSCRIPTION_NOT_FOUND", "Subscription not found.")
    return _json({"success": True, "ok": True, "id": sub_id, "requestId": request_id(request)})


async def list_deliveries(request: web.Request) -> web.Response:
    """GET /api/music-clips/subscriptions/{id}/deliveries — the latest attempts, newest first."""
    api = request.app[NOTIFY]
    user = await _user(request)
    sub_id = await _owned(request, user)
    limit = parse_limit(request.query.get("limit"), 50)
    attempts = await api.store.attempts(subscription_id=sub_id, limit=limit)
    return _json(
        {
            "success": True,
            "ok": True,
            "subscriptionId": sub_id,
            "deliveries": [attempt_view(a) for a in attempts],
            "requestId": request_id(request),
        }
    )
