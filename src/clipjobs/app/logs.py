"""Logging helpers: the request id in context, a filter that redacts secrets, one-line text.

Loggers (SPEC section 9): ``clipjobs.job`` (the seed's ``[MusicClipsJob]``)
and ``clipjobs.pipeline`` (``[MusicClips]``). Every record about a job carries
``job_id``, ``stage`` and ``request_id`` as attributes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from contextvars import ContextVar

__all__ = ["RedactingFilter", "current_request_id", "job_log", "one_line", "pipeline_log"]

job_log = logging.getLogger("clipjobs.job")
pipeline_log = logging.getLogger("clipjobs.pipeline")

#: The request being served (set by the HTTP layer), for log lines and events.
current_request_id: ContextVar[str | None] = ContextVar("clipjobs_request_id", default=None)

_PATTERNS = (
    # A whole Authorization value, to the end of its line or quote: a malformed one
    # (a NUL, a second space) must not leave a tail after the part that looked like a token.
    re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*)(?:[^\r\n\\'\"]|\\.)+"),
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


# C0 controls, DEL, C1 controls, and the two Unicode line separators: everything a
# terminal or a log viewer may take as a line break or an escape sequence.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def one_line(text: str) -> str:
    """``text`` with every control character written as an escape (``\\n``, ``\\x1b``…).

    A log line built from a URL, an id or a message a client chose then stays one
    line: a ``%0a`` cannot start a forged record, an ``ESC[31m`` cannot colour a
    terminal. Backslashes are left alone, so an escape is readable but not
    reversible; the JSON format is exact.
    """
    if _CONTROL.search(text) is None:
        return text
    return _CONTROL.sub(_escape, text)
