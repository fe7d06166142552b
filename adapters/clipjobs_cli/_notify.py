"""Outgoing webhooks in the composition root: the routes and the sender, from settings."""

from __future__ import annotations

import contextlib
from typing import cast

from aiohttp import web

from clipjobs.app.config import Settings
from clipjobs.app.metrics import Metrics
from clipjobs.app.notify import NotifyStore
from clipjobs.app.ports import Clock, EventStore
from clipjobs_aiohttp import NotifyConfig, WebhookSender, add_subscriptions

__all__ = ["add_webhook_routes", "start_webhooks"]


def add_webhook_routes(app: web.Application, store: EventStore, settings: Settings) -> None:
    """The subscription routes, under the per-user limit and URL rules of ``settings``."""
    add_subscriptions(
        app,
        cast(NotifyStore, store),  # every shipped store is one (NotifyStoreContract)
        max_subscriptions=settings.notify_max_subscriptions,
        allow_private=settings.notify_allow_private,
    )


async def start_webhooks(
    stack: contextlib.AsyncExitStack,
    store: EventStore,
    clock: Clock,
    owner: str,
    settings: Settings,
    metrics: Metrics | None = None,
) -> WebhookSender:
    """Start delivering the outbox; it stops when ``stack`` closes (before the store)."""
    config = NotifyConfig(
        allow_private=settings.notify_allow_private,
        backoff_s=settings.notify_backoff_s,
        timeout_s=settings.notify_timeout_s,
        give_up_s=settings.notify_give_up_s,
        stale_after_s=settings.stale_after_s,
        lease_s=max(settings.lease_s, settings.notify_timeout_s * 3),
    )
    sender = WebhookSender(
        cast(NotifyStore, store), store, clock=clock, owner=owner, config=config, metrics=metrics
    )
    return await stack.enter_async_context(sender)
