"""Both log formats write one physical line per record, whatever the record holds."""

from __future__ import annotations

import json
import logging

from clipjobs.app.logs import RedactingFilter, one_line
from clipjobs_cli._logging import JsonFormatter, TextFormatter

NASTY = "a\nb\rc\x1b[31md\x00e\x7ff\x85g\x9bh\u2028i\u2029j\tk"


def _record(message: str, *, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("bad\nvalue")
        except ValueError as error:
            exc_info = (ValueError, error, error.__traceback__)
    return logging.LogRecord("clipjobs.pipeline", logging.ERROR, __file__, 1, message, (), exc_info)


def test_text_lines_escape_every_control_character() -> None:
    """C0, DEL, C1 and U+2028/9 come out as escapes; a traceback stays on the line."""
    line = TextFormatter().format(_record(NASTY, exc=True))
    assert len(line.splitlines()) == 1
    assert "a\\nb\\rc\\x1b[31md\\x00e\\x7ff\\x85g\\x9bh\\u2028i\\u2029j\\tk" in line
    assert "Traceback (most recent call last):\\n" in line and "bad\\nvalue" in line
    assert one_line("plain text, ünïcode") == "plain text, ünïcode"


def test_json_lines_escape_what_json_leaves_raw() -> None:
    """JSON escapes C0 itself; DEL, C1 and U+2028/9 are escaped too, and the value survives."""
    line = JsonFormatter().format(_record(NASTY))
    assert len(line.splitlines()) == 1
    assert not any(c in line for c in "\x7f\x85\x9b\u2028\u2029")
    assert json.loads(line)["message"] == NASTY


def test_a_malformed_authorization_value_is_redacted_to_its_end() -> None:
    """Everything after ``Authorization:`` up to the line's or quote's end becomes ``***``."""
    redact = RedactingFilter().redact
    assert redact("b'Authorization: Bearer tok\\x001234'") == "b'Authorization: ***'"
    assert redact("Authorization: Basic YWxp Y2U=\nnext") == "Authorization: ***\nnext"
