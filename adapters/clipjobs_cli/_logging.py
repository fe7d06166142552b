"""Logging for ``clipjobs serve``: text or JSON lines, every one through the redaction filter.

Records about a job carry ``job_id``, ``stage`` and ``request_id`` attributes
(the core and the HTTP layer set them); both formats show them when present.
Each record is exactly one line in both formats, whatever a client put in a
URL, an id or a header: control characters are escaped where the line is
written, here, and nowhere else.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TextIO

from aiohttp.http_exceptions import HttpProcessingError

from clipjobs.app.logs import RedactingFilter, current_request_id, one_line

__all__ = ["JsonFormatter", "TextFormatter", "configure_logging", "log_handler"]

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
    """``2026-11-29T02:40:00.123Z INFO clipjobs.job message jobId=… stage=… requestId=…``.

    One record, one line: a traceback is kept, its line breaks written ``\\n``.
    """

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname} {record.name} {record.getMessage()}"
        context = _context(record)
        if context:
            line += " " + " ".join(f"{_NAMES[k]}={v}" for k, v in context.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        elif record.exc_text:
            line += "\n" + record.exc_text
        return one_line(line)


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
        # json escapes C0 controls; DEL, C1 and U+2028/9 would pass raw with ensure_ascii off.
        return json.dumps(body, ensure_ascii=False).translate(_JSON_ESCAPES)


_JSON_ESCAPES = {c: f"\\u{c:04x}" for c in (0x7F, *range(0x80, 0xA0), 0x2028, 0x2029)}


class _BadRequestLine(logging.Filter):
    """aiohttp's record of a request it could not parse, as one line without its content.

    aiohttp logs these on ``aiohttp.server`` at ERROR with a traceback whose
    message quotes the offending bytes — a malformed ``Authorization`` header
    included. Anyone can send them, so they are a WARNING naming the client and
    what was wrong, and nothing the client wrote.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != "aiohttp.server" or not record.exc_info:
            return True
        exc = record.exc_info[1]
        if not isinstance(exc, HttpProcessingError):
            return True
        reason = _REASON_END.split(str(exc.message).strip(), maxsplit=1)[0].strip()
        remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        record.msg = "bad HTTP request from %s: %s %s (%s); its content is not logged"
        record.args = (remote, exc.code, type(exc).__name__, reason[:80] or "unparseable")
        record.exc_info = None
        record.exc_text = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


# The parser's reason ends where it starts quoting the request: at a colon, quote or line.
_REASON_END = re.compile(r"[:'\"\n]")


def log_handler(fmt: str, redactor: RedactingFilter, stream: TextIO) -> logging.Handler:
    """The one handler ``clipjobs serve`` logs through: format, bad-request lines, redaction."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_BadRequestLine())
    handler.addFilter(redactor)
    return handler


def configure_logging(
    level: str, fmt: str, secrets: Iterable[str] = (), stream: TextIO | None = None
) -> RedactingFilter:
    """Send every log record to ``stream`` (stderr) through one redaction filter; return it.

    The filter sits on the handler, so records of every library logger
    (aiohttp's and asyncpg's included) pass through it. Add secrets learnt later
    (the webhook secret, a generated token) with ``filter.add``.
    """
    redactor = RedactingFilter(secrets)
    handler = log_handler(fmt, redactor, stream or sys.stderr)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # asyncio's debug chatter (slow callbacks, selector noise) is not for operators.
    logging.getLogger("asyncio").setLevel(max(logging.WARNING, root.level))
    return redactor
