"""``create_app``: the HTTP API as a sub-application anyone can mount."""

from __future__ import annotations

import logging
import time
import traceback
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Handler

from clipjobs.app.ids import new_request_id
from clipjobs.app.logs import RedactingFilter, current_request_id, pipeline_log
from clipjobs.app.metrics import Metrics
from clipjobs.app.ports import Authenticator
from clipjobs.app.service import JobService
from clipjobs.app.webhook import WEBHOOK_PATH

from . import _acting as acting
from . import _handlers as h
from ._config import ApiConfig
from ._errors import ApiError, error_response, translate
from ._fleet import add_fleet_routes
from ._keys import AUTHENTICATOR, CONFIG, LIFECYCLE, METRICS, OPENAPI, SERVICE, Lifecycle
from ._media import MediaFile
from ._pages import add_pages

__all__ = ["RedactedAccessLogger", "create_app", "load_openapi"]

#: Query parameters whose values never reach a log line.
_REDACT = RedactingFilter()
_SECRET_PARAMS = frozenset({"token", "access_token", "api_key", "apikey", "key"})


def load_openapi(path: Path | None = None) -> dict[str, Any]:
    """The OpenAPI document: ``path``, or the copy shipped inside this package."""
    if path is not None:
        text = path.read_text(encoding="utf-8")
    else:
        text = resources.files(__package__).joinpath("openapi.yaml").read_text(encoding="utf-8")
    document = yaml.safe_load(text)
    if not isinstance(document, dict):
        raise ValueError("the OpenAPI document is not a mapping")
    return document


def _loggable_path(request: web.BaseRequest) -> str:
    """The path with secret query values replaced by ``***``."""
    if not request.query_string:
        return request.path
    parts = [
        f"{quote(k, safe='')}={'***' if k.lower() in _SECRET_PARAMS else quote(v, safe='')}"
        for k, v in request.query.items()
    ]
    return f"{request.path}?{'&'.join(parts)}"


class RedactedAccessLogger(AbstractAccessLogger):
    """An ``access_log_class`` for runners serving clipjobs: webhook tokens become ``***``.

    aiohttp's default access log prints the request line, query string and
    all, which would write every webhook token into the logs. Pass this as
    ``web.run_app(app, access_log_class=RedactedAccessLogger)`` or to
    ``web.AppRunner``, or ``access_log=None`` (the API logs each request on
    ``clipjobs.pipeline`` itself).
    """

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %s %s %.1fms",
            request.remote,
            request.method,
            _loggable_path(request),
            response.status,
            time * 1000,
        )


def _route_label(request: web.Request) -> str:
    resource = request.match_info.route.resource
    # Unmatched paths share one label: URLs people make up must not grow the metrics.
    return resource.canonical if resource is not None else "unmatched"


def _middleware(config: ApiConfig, service: JobService, metrics: Metrics) -> Any:
    @web.middleware
    async def clipjobs_api(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        rid = new_request_id(service.now())
        reset = current_request_id.set(rid)
        status = 500
        try:
            try:
                response = await handler(request)
            except Exception as exc:
                error = translate(exc, config.retry_after_s)
                if error is None:
                    # Redacted by hand: an exception's text may quote a header or a URL.
                    details = _REDACT.redact("".join(traceback.format_exception(exc)))
                    pipeline_log.error(
                        "unhandled error on %s %s\n%s",
                        request.method,
                        _loggable_path(request),
                        details,
                        extra={"request_id": rid},
                    )
                    error = ApiError(500, "INTERNAL_ERROR", "Internal server error.")
                response = error_response(error, rid)
            if not response.prepared:
                response.headers["X-Request-Id"] = rid
            status = response.status
            if isinstance(response, MediaFile):
                # A file's status (206, 304, 416…) is settled while it is sent: say it then.
                response.on_sent = lambda sent: record(request, sent, started, rid)
                status = 0
            return response
        finally:
            if status:
                record(request, status, started, rid)
            current_request_id.reset(reset)

    def record(request: web.Request, status: int, started: float, rid: str) -> None:
        metrics.inc("clipjobs_http_requests_total", route=_route_label(request), status=str(status))
        # Checked first: the redacted path is built only for a line that is written.
        if pipeline_log.isEnabledFor(logging.INFO):
            pipeline_log.info(
                "%s %s %s %.1fms",
                request.method,
                _loggable_path(request),
                status,
                (time.perf_counter() - started) * 1000,
                extra={"request_id": rid},
            )

    return clipjobs_api


def create_app(
    service: JobService,
    authenticator: Authenticator,
    config: ApiConfig | None = None,
    *,
    metrics: Metrics | None = None,
) -> web.Application:
    """The clipjobs HTTP API (SPEC section 4) as an ``aiohttp`` application.

    Serve it as it is, or mount it in your own app with
    ``parent.add_subapp("/prefix", app)``: its routes, ``Location`` headers
    and error bodies follow the prefix. ``metrics`` defaults to the service's.
    """
    config = config or ApiConfig()
    metrics = metrics or service.metrics
    app = web.Application(middlewares=[_middleware(config, service, metrics)])
    lifecycle = Lifecycle()
    app[SERVICE] = service
    app[AUTHENTICATOR] = authenticator
    app[CONFIG] = config
    app[METRICS] = metrics
    app[LIFECYCLE] = lifecycle
    app[OPENAPI] = load_openapi(config.openapi_path)
    app.on_startup.append(lifecycle.on_startup)
    app.on_shutdown.append(lifecycle.on_shutdown)

    api = "/api/music-clips"
    router = app.router
    router.add_post(f"{api}/channels/{{channel_id}}/runOnce", h.run_once)
    router.add_get(f"{api}/channels/{{channel_id}}/jobs", h.list_jobs)
    router.add_get(f"{api}/jobs/{{job_id}}", h.get_job, name=h.JOB_ROUTE)
    router.add_get(f"{api}/jobs/{{job_id}}/events", h.job_events, allow_head=False)
    router.add_get(f"{api}/jobs/{{job_id}}/history", h.history)
    router.add_post(f"{api}/jobs/{{job_id}}/cancel", acting.cancel_job)
    router.add_post(f"{api}/jobs/{{job_id}}/retry", acting.retry_job)
    router.add_get(f"{api}/openapi.json", h.openapi)
    add_fleet_routes(app, api)
    router.add_post(WEBHOOK_PATH, h.suno_webhook)
    router.add_get("/healthz", h.healthz)
    router.add_get("/readyz", h.readyz)
    router.add_get("/metrics", h.metrics)
    add_pages(app)
    return app
