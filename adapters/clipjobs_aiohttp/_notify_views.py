"""Webhook attempts on the wire, and where the API finds the subscriptions store.

Kept apart from the handlers so ``/history`` can show a job's webhook
attempts without importing the subscription routes.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from attrs import frozen

from clipjobs.app.notify import Attempt, NotifyStore
from clipjobs.domain.codec import format_ts

from ._notify_guard import Resolve

__all__ = ["NOTIFY", "NotifyApi", "attempt_view", "webhook_lines"]


@frozen
class NotifyApi:
    """What the subscription routes need: the store, the rules, the resolver."""

    store: NotifyStore
    max_subscriptions: int
    allow_private: bool
    resolve: Resolve


NOTIFY = web.AppKey("clipjobs_notify", NotifyApi)


def attempt_view(attempt: Attempt) -> dict[str, Any]:
    """One delivery attempt: what was sent, what came back, what happens next."""
    return {
        "webhookId": attempt.delivery_id,
        "subscriptionId": attempt.subscription_id,
        "event": attempt.type,
        "jobId": attempt.job_id,
        "attempt": attempt.number,
        "at": format_ts(attempt.at),
        "statusCode": attempt.status_code,
        "durationMs": round(attempt.duration_ms, 1),
        "delivered": attempt.delivered,
        "error": attempt.error,
        "nextAttemptAt": format_ts(attempt.next_at) if attempt.next_at is not None else None,
    }


async def webhook_lines(app: web.Application, job_id: str) -> list[dict[str, Any]] | None:
    """The job's webhook attempts, newest first; None when subscriptions are not served."""
    api = app.get(NOTIFY)
    if api is None:
        return None
    return [attempt_view(a) for a in await api.store.attempts(job_id=job_id, limit=100)]
