"""Logging for ``clipjobs serve``: text or JSON lines, every one through the redaction filter.

Records about a job carry ``job_id``, ``stage`` and ``request_id`` attributes
(the core and the HTTP layer set them); both formats show them when present.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TextIO

from clipjobs.logs import RedactingFilter, current_request_id

__all__ = ["JsonFormatter", "TextFormatter", "configure_logging"]

_CONTEXT = ("job_id", "stage", "request_id")
_NAMES = {"job_id": "jobId", "stage": "stage", "request_id": "requestId"}


def _context(record: logging.LogRecord) -> dict[str, str]:
    found = {name: getattr(record, name, None) for name in _CONTEXT}
    if found["request_id"] is None:
        found["request_id"] = current_request_id.get()
    return {name: str(value) for name, value in found.items() if value is not None}


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class TextFormatter(logging.Formatter):
    """``2026-11-29T02:40:00.123Z INFO clipjobs.job message jobId=… stage=… requestId=…``."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname} {record.name} {record.getMessage()}"
        context = _context(record)
        if context:
            line += " " + " ".join(f"{_NAMES[k]}={v}" for k, v in context.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        elif record.exc_text:
            line += "\n" + record.exc_text
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line (``CLIPJOBS_LOG_FORMAT=json``)."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, str] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        body.update({_NAMES[k]: v for k, v in _context(record).items()})
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            body["exception"] = record.exc_text
        return json.dumps(body, ensure_ascii=False)


def configure_logging(
    level: str, fmt: str, secrets: Iterable[str] = (), stream: TextIO | None = None
) -> RedactingFilter:
    """Send every log record to ``stream`` (stderr) through one redaction filter; return it.

    The filter sits on the handler, so records of every library logger
    (aiohttp's and asyncpg's included) pass through it. Add secrets learnt later
    (the webhook secret, a generated token) with ``filter.add``.
    """
    redactor = RedactingFilter(secrets)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(redactor)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # asyncio's debug chatter (slow callbacks, selector noise) is not for operators.
    logging.getLogger("asyncio").setLevel(max(logging.WARNING, root.level))
    return redactor
