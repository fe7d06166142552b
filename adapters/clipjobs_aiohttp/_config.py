"""``ApiConfig``: the HTTP adapter's knobs (the service has its own)."""

from __future__ import annotations

from pathlib import Path

from attrs import frozen

__all__ = ["ApiConfig"]


@frozen(kw_only=True)
class ApiConfig:
    """How the HTTP API answers; every field has the SPEC's default."""

    #: ``heartbeat.isStale`` threshold; None takes the service's ``stale_after_s``.
    stale_after_s: float | None = None
    #: Request bodies over this are refused with 413 before they are parsed.
    max_body_bytes: int = 1024 * 1024
    #: A request body still arriving after this many seconds is refused with 408.
    body_timeout_s: float = 30.0
    #: ``Prefer: wait=N`` is capped to this many seconds.
    long_poll_max_s: float = 60.0
    #: Seconds of silence on an SSE stream before a ``: keep-alive`` comment.
    sse_keepalive_s: float = 15.0
    #: How often an SSE stream of a job waiting for Suno looks at its place in the queue.
    sse_queue_refresh_s: float = 2.0
    #: ``Retry-After`` on 202 answers and on jobs that are not done.
    retry_after_s: int = 3
    #: Where the OpenAPI document is read from; None serves the packaged copy.
    openapi_path: Path | None = None
    #: ``?limit=`` of the channel's job list when none is given.
    list_limit: int = 20
