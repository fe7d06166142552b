"""The sub-application's dependencies, under typed ``web.AppKey``s."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from clipjobs.app.metrics import Metrics
from clipjobs.app.ports import Authenticator
from clipjobs.app.service import JobService

from ._config import ApiConfig

__all__ = ["AUTHENTICATOR", "CONFIG", "LIFECYCLE", "METRICS", "OPENAPI", "SERVICE", "Lifecycle"]


class Lifecycle:
    """Long-lived responses (SSE, long-polls) watch ``closing`` to end at shutdown.

    A holder rather than an app item, because an app is frozen before its
    startup and each start needs a fresh event.
    """

    def __init__(self) -> None:
        self.closing = asyncio.Event()

    async def on_startup(self, _app: web.Application) -> None:
        self.closing = asyncio.Event()

    async def on_shutdown(self, _app: web.Application) -> None:
        self.closing.set()


SERVICE = web.AppKey("service", JobService)
AUTHENTICATOR: web.AppKey[Authenticator] = web.AppKey("authenticator")
CONFIG = web.AppKey("config", ApiConfig)
METRICS = web.AppKey("metrics", Metrics)
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
OPENAPI: web.AppKey[dict[str, Any]] = web.AppKey("openapi")
