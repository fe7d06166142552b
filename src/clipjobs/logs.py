"""Logging helpers: the request id in context, and a filter that redacts secrets.

Loggers (SPEC section 9): ``clipjobs.job`` (the seed's ``[MusicClipsJob]``)
and ``clipjobs.pipeline`` (``[MusicClips]``). Every record about a job carries
``job_id``, ``stage`` and ``request_id`` as attributes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from contextvars import ContextVar

__all__ = ["RedactingFilter", "current_request_id", "job_log", "pipeline_log"]

job_log = logging.getLogger("clipjobs.job")
pipeline_log = logging.getLogger("clipjobs.pipeline")

#: The request being served (set by the HTTP layer), for log lines and events.
current_request_id: ContextVar[str | None] = ContextVar("clipjobs_request_id", default=None)

_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"(?i)([?&]token=)[^&\s\"']+"),
    re.compile(
        r"(?i)((?:api[_-]?key|authorization|token|secret)[\"']?\s*[:=]\s*[\"']?)[^\s\"',&]+"
    ),
)


class RedactingFilter(logging.Filter):
    """Replaces known secrets and secret-looking values in every record with ``***``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets: set[str] = {s for s in secrets if s and len(s) >= 4}

    def add(self, secret: str) -> None:
        if secret and len(secret) >= 4:
            self._secrets.add(secret)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "***")
        for pattern in _PATTERNS:
            text = pattern.sub(lambda m: m.group(1) + "***", text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redact(message)
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if redacted != message or record.args:
            record.msg, record.args = redacted, None
        return True
