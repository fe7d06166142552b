"""What the client commands print: a live line on a terminal, plain lines elsewhere, or JSON."""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, TextIO

from clipjobs.domain.codec import parse_ts

__all__ = [
    "JsonLines",
    "LiveLine",
    "PlainLines",
    "Renderer",
    "elapsed_text",
    "history_table",
    "result_lines",
    "text",
]

#: The client's own words; the job's progress and error texts come from the server.
_TEXTS: Mapping[str, Mapping[str, str]] = {
    "ru": {
        "running": "идёт",
        "heartbeat": "пульс",
        "ago": "с назад",
        "stale": "НЕТ ВЕСТЕЙ",
        "took": "за",
        "audio": "аудио",
        "track": "трек",
        "clip": "клип",
        "error": "ошибка",
        "version": "версия",
        "time": "время (UTC)",
        "type": "событие",
        "stage_after": "стадия после",
        "detail": "подробности",
        "job": "задача",
        "page": "страница",
    },
    "en": {
        "running": "elapsed",
        "heartbeat": "heartbeat",
        "ago": "s ago",
        "stale": "STALE",
        "took": "in",
        "audio": "audio",
        "track": "track",
        "clip": "clip",
        "error": "error",
        "version": "version",
        "time": "time (UTC)",
        "type": "event",
        "stage_after": "stage after",
        "detail": "detail",
        "job": "job",
        "page": "status page",
    },
}

_SPINNER = "|/-\\"


def text(lang: str, key: str) -> str:
    return _TEXTS.get(lang, _TEXTS["en"])[key]


def _seconds_between(start: str | None, end: datetime) -> float:
    if not start:
        return 0.0
    try:
        return max(0.0, (end - parse_ts(start)).total_seconds())
    except ValueError:
        return 0.0


def elapsed_text(seconds: float) -> str:
    """``M:SS`` (minutes keep counting past 59, as the status page's timer does)."""
    whole = int(seconds)
    return f"{whole // 60}:{whole % 60:02d}"


def _stage(view: Mapping[str, Any]) -> str:
    return str(view.get("stage") or "?")


class Renderer(Protocol):
    """Shows each job view as it arrives, then the end of the watch."""

    def show(self, view: Mapping[str, Any]) -> None: ...

    def tick(self) -> None: ...

    def finish(self, final: Mapping[str, Any] | None, base_url: str) -> None: ...

    def abort(self) -> None: ...


class JsonLines:
    """``--json``: every view as one JSON object on its own line; the last is the final view."""

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self._out = out

    def show(self, view: Mapping[str, Any]) -> None:
        self._out.write(json.dumps(view, ensure_ascii=False) + "\n")
        self._out.flush()

    def tick(self) -> None:
        pass

    def finish(self, final: Mapping[str, Any] | None, base_url: str) -> None:
        pass

    def abort(self) -> None:
        pass


class PlainLines:
    """Not a terminal: one line per change, timed by the server's clock, and the result."""

    def __init__(self, lang: str, out: TextIO = sys.stdout) -> None:
        self._lang = lang
        self._out = out

    def show(self, view: Mapping[str, Any]) -> None:
        updated = view.get("updatedAt")
        at = parse_ts(updated) if isinstance(updated, str) else datetime.now(UTC)
        elapsed = elapsed_text(_seconds_between(view.get("createdAt"), at))
        heartbeat = view.get("heartbeat") or {}
        line = f"[{elapsed}] {_stage(view)} {view.get('progressText') or ''}".rstrip()
        if heartbeat.get("isStale"):
            age = heartbeat.get("secondsSinceUpdate")
            line += f" ({text(self._lang, 'stale')}: {text(self._lang, 'heartbeat')} {age} "
            line += f"{text(self._lang, 'ago')})"
        self._out.write(line + "\n")
        self._out.flush()

    def tick(self) -> None:
        pass

    def finish(self, final: Mapping[str, Any] | None, base_url: str) -> None:
        if final is not None and final.get("done"):
            self._out.write(
                "".join(f"{line}\n" for line in result_lines(final, base_url, self._lang))
            )
            self._out.flush()

    def abort(self) -> None:
        pass


class LiveLine:
    """A terminal: one line rewritten in place (``\\r`` and erase) every second and on change.

    The heartbeat age keeps counting between views (the stream only speaks on
    a change), and the line is marked stale once it passes ``stale_after_s``
    or the server says so.
    """

    def __init__(self, lang: str, stale_after_s: float, out: TextIO = sys.stdout) -> None:
        self._lang = lang
        self._stale_after_s = stale_after_s
        self._out = out
        self._view: Mapping[str, Any] | None = None
        self._received = 0.0
        self._frames = 0
        self._drawn = False

    def show(self, view: Mapping[str, Any]) -> None:
        self._view = view
        self._received = time.monotonic()
        self.tick()

    def _line(self, view: Mapping[str, Any]) -> str:
        t = self._lang
        stage = _stage(view)
        number, _, name = stage.removeprefix("STAGE_").partition("_")
        heartbeat = view.get("heartbeat") or {}
        age = int(heartbeat.get("secondsSinceUpdate") or 0) + int(time.monotonic() - self._received)
        stale = bool(heartbeat.get("isStale")) or age >= self._stale_after_s
        spinner = _SPINNER[self._frames % len(_SPINNER)]
        running = _seconds_between(view.get("createdAt"), datetime.now(UTC))
        parts = [
            f"{spinner} [{number}] {name}",
            str(view.get("progressText") or ""),
            f"{text(t, 'running')} {elapsed_text(running)}",
            f"{text(t, 'heartbeat')} {age} {text(t, 'ago')}",
        ]
        if stale:
            parts.append(f"!! {text(t, 'stale')}")
        return " · ".join(p for p in parts if p)

    def tick(self) -> None:
        if self._view is None:
            return
        self._frames += 1
        width = max(20, shutil.get_terminal_size((100, 24)).columns - 1)
        line = self._line(self._view)
        if len(line) > width:
            line = line[: width - 1] + "…"
        self._out.write(f"\r\x1b[2K{line}")
        self._out.flush()
        self._drawn = True

    def _clear(self) -> None:
        if self._drawn:
            self._out.write("\r\x1b[2K")
            self._drawn = False

    def finish(self, final: Mapping[str, Any] | None, base_url: str) -> None:
        self._clear()
        if final is not None and final.get("done"):
            self._out.write(
                "".join(f"{line}\n" for line in result_lines(final, base_url, self._lang))
            )
        elif self._view is not None:
            # Not done (gave up waiting): keep the last state on screen.
            self._out.write(self._line(self._view) + "\n")
        self._out.flush()

    def abort(self) -> None:
        if self._drawn:
            self._out.write("\n")
            self._out.flush()
            self._drawn = False


def _absolute(url: str, base_url: str) -> str:
    return f"{base_url.rstrip('/')}{url}" if url.startswith("/") else url


def result_lines(view: Mapping[str, Any], base_url: str, lang: str) -> list[str]:
    """How a finished job ended: its stage and time, then the audio and clip, or the error."""
    took = elapsed_text(
        _seconds_between(
            view.get("createdAt"),
            parse_ts(view["updatedAt"]) if view.get("updatedAt") else datetime.now(UTC),
        )
    )
    progress = view.get("progressText") or ""
    lines = [f"{_stage(view)} {text(lang, 'took')} {took}: {progress}".rstrip()]
    if view.get("error") or view.get("errorCode"):
        code = f" ({view['errorCode']})" if view.get("errorCode") else ""
        lines.append(f"{text(lang, 'error')}: {view.get('error') or ''}{code}".rstrip())
    tracks: Sequence[Mapping[str, Any]] = view.get("tracks") or []
    audio = view.get("audioUrl")
    if audio:
        lines.append(f"{text(lang, 'audio')}: {audio}")
    for index, track in enumerate(tracks, start=1):
        url = track.get("audioUrl")
        if url and url != audio:
            lines.append(f"{text(lang, 'track')} {index}: {url}")
    if view.get("clipUrl"):
        lines.append(f"{text(lang, 'clip')}: {_absolute(str(view['clipUrl']), base_url)}")
    return lines


def history_table(rows: Sequence[Sequence[str]], lang: str) -> str:
    """Columns padded to their widest cell, a header, no borders."""
    header = [text(lang, k) for k in ("version", "time", "type", "stage_after", "detail")]
    table = [header, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    out = []
    for row in table:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        out.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(out) + "\n"
