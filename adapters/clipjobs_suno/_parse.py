"""Suno's payloads as the core's values: callbacks (snake_case) and record-info (camelCase).

Everything here reads untrusted JSON: any shape that is not what the API
documents becomes :class:`~clipjobs.domain.errors.SunoProtocolError`, never a
``KeyError`` or ``TypeError``.

Suno signs nothing, so whoever holds one job's callback URL can post anything
there, as often as they like. What becomes an observation is therefore
bounded here: the first :data:`MAX_TRACKS` tracks (Suno makes two per
request), URLs of at most :data:`MAX_URL` characters (a longer one is dropped:
cut, it would be a broken link), titles and messages cut with
:data:`CUT_MARK`. However large the body, an observation stays a few KiB.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from clipjobs.domain.errors import SunoProtocolError
from clipjobs.domain.events import (
    AlignedWord,
    Observation,
    ProviderStatus,
    TimestampedLyrics,
    Track,
)

__all__ = [
    "CUT_MARK",
    "MAX_TEXT",
    "MAX_TRACKS",
    "MAX_URL",
    "failure_status",
    "parse_callback",
    "parse_record_info",
    "parse_timestamped_lyrics",
    "require_id",
    "require_mapping",
]

_MAX_ID = 200
#: Tracks kept from one answer: Suno makes two per generate request.
MAX_TRACKS = 2
#: The longest URL kept, in characters (Suno's CDN links are about 100).
MAX_URL = 2048
#: The longest title or error message kept, in characters, before the mark.
MAX_TEXT = 500
#: What ends a text that was cut.
CUT_MARK = "…[truncated]"

# Suno has no separate callback type for moderation: the error message says it.
_SENSITIVE = re.compile(r"(?i)sensitive|moderat|flagged|inappropriate|violat")

_CALLBACK_STATUS = {
    "text": ProviderStatus.TEXT_SUCCESS,
    "first": ProviderStatus.FIRST_SUCCESS,
    "complete": ProviderStatus.SUCCESS,
}

_STATUSES = frozenset(s.value for s in ProviderStatus)

# (snake_case, camelCase): callbacks use the first, record-info the second.
_TRACK_FIELDS = {
    "audio_url": ("audio_url", "audioUrl"),
    "stream_audio_url": ("stream_audio_url", "streamAudioUrl"),
    "image_url": ("image_url", "imageUrl"),
}


def failure_status(message: str | None) -> ProviderStatus:
    """The status an ``error`` callback stands for: moderation or a failed generation."""
    if message and _SENSITIVE.search(message):
        return ProviderStatus.SENSITIVE_WORD_ERROR
    return ProviderStatus.GENERATE_AUDIO_FAILED


def require_mapping(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SunoProtocolError(f"{what} is {type(value).__name__}, not an object")
    return value


def require_id(value: object, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise SunoProtocolError(f"{what} is missing or not a string")
    text = str(value).strip()
    if not text or len(text) > _MAX_ID:
        raise SunoProtocolError(f"{what} is empty or too long")
    return text


def _cut(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + CUT_MARK


def _url(text: str) -> str:
    return text if len(text) <= MAX_URL else ""


def _opt_text(item: Mapping[str, Any], keys: tuple[str, ...], what: str) -> str:
    for key in keys:
        if key in item:
            value = item[key]
            if value is None:
                return ""
            if not isinstance(value, str):
                raise SunoProtocolError(f"{what}.{key} is {type(value).__name__}, not a string")
            return value
    return ""


def _duration(value: object) -> float | None:
    # Suno sends a number, null, or nothing; a string that reads as one is kept.
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _track(item: object, snake_first: bool, what: str) -> Track:
    entry = require_mapping(item, what)
    fields: dict[str, str] = {}
    for name, (snake, camel) in _TRACK_FIELDS.items():
        keys = (snake, camel) if snake_first else (camel, snake)
        fields[name] = _url(_opt_text(entry, keys, what))
    # createTime is a string ("2025-01-01 00:00:00") in the docs and epoch ms in
    # real payloads; Track does not carry it, so neither form is an error.
    return Track(
        id=require_id(entry.get("id"), f"{what}.id"),
        title=_cut(_opt_text(entry, ("title",), what)),
        duration=_duration(entry.get("duration")),
        **fields,
    )


def _tracks(value: object, snake_first: bool, what: str) -> tuple[Track, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise SunoProtocolError(f"{what} is {type(value).__name__}, not a list")
    # Entries past the second are not read at all: not Suno's, and not worth a look.
    return tuple(
        _track(item, snake_first, f"{what}[{i}]") for i, item in enumerate(value[:MAX_TRACKS])
    )


def _code(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SunoProtocolError(f"{what} is missing or not an integer")
    return value


def _message(value: object) -> str | None:
    return _cut(value) if isinstance(value, str) else None


def parse_callback(payload: object) -> Observation:
    """A callback body as an :class:`Observation`; SunoProtocolError when it is not one.

    ``{"code", "msg", "data": {"callbackType", "task_id", "data": [...] | [] | null}}``
    with snake_case track fields. A non-200 ``code`` is a failure whatever the
    ``callbackType`` says.
    """
    body = require_mapping(payload, "callback")
    code = _code(body.get("code"), "callback code")
    message = _message(body.get("msg"))
    data = require_mapping(body.get("data"), "callback data")
    # The documented name is task_id; taskId is what the sister API sends.
    raw_id = data.get("task_id") if "task_id" in data else data.get("taskId")
    task_id = require_id(raw_id, "callback data.task_id")
    kind = data.get("callbackType")
    if not isinstance(kind, str) or (kind not in _CALLBACK_STATUS and kind != "error"):
        shown = kind[:40] if isinstance(kind, str) else type(kind).__name__
        raise SunoProtocolError(f"callback data.callbackType {shown!r} is not a known type")
    tracks = _tracks(data.get("data"), True, "callback data.data")
    if kind == "error" or code != 200:
        return Observation(
            task_id,
            failure_status(message),
            tracks,
            error_code=code,
            error_message=message or "Music generation failed",
        )
    return Observation(task_id, _CALLBACK_STATUS[kind], tracks)


def _error_code(value: object) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def parse_record_info(data: object, task_id: str | None = None) -> Observation:
    """record-info's ``data`` (camelCase) as an :class:`Observation`.

    ``response`` is null while the task is pending. When ``task_id`` is given,
    an answer about another task is a protocol error.
    """
    info = require_mapping(data, "record-info data")
    if info.get("taskId") in (None, ""):
        if task_id is None:
            raise SunoProtocolError("record-info data.taskId is missing")
        found = task_id
    else:
        found = require_id(info.get("taskId"), "record-info data.taskId")
        if task_id is not None and found != task_id:
            raise SunoProtocolError(f"record-info answered about task {found}, not {task_id}")
    raw_status = info.get("status")
    if not isinstance(raw_status, str) or raw_status not in _STATUSES:
        shown = raw_status[:40] if isinstance(raw_status, str) else type(raw_status).__name__
        raise SunoProtocolError(f"record-info data.status {shown!r} is not a known status")
    status = ProviderStatus(raw_status)
    response = info.get("response")
    tracks: tuple[Track, ...] = ()
    if response is not None:
        tracks = _tracks(
            require_mapping(response, "record-info data.response").get("sunoData"),
            False,
            "record-info data.response.sunoData",
        )
    if not status.is_failure:
        return Observation(found, status, tracks)
    return Observation(
        found,
        status,
        tracks,
        error_code=_error_code(info.get("errorCode")),
        error_message=_message(info.get("errorMessage")),
    )


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SunoProtocolError(f"{what} is {type(value).__name__}, not a number")
    number = float(value)
    if not math.isfinite(number):
        raise SunoProtocolError(f"{what} is not a finite number")
    return number


def _list(value: object, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise SunoProtocolError(f"{what} is {type(value).__name__}, not a list")
    return value


def _aligned_word(item: object, what: str) -> AlignedWord:
    entry = require_mapping(item, what)
    word = entry.get("word")
    if not isinstance(word, str):
        raise SunoProtocolError(f"{what}.word is {type(word).__name__}, not a string")
    success = entry.get("success", True)
    if not isinstance(success, bool):
        raise SunoProtocolError(f"{what}.success is {type(success).__name__}, not a boolean")
    palign = entry.get("palign")
    return AlignedWord(
        word=word,
        start_s=_number(entry.get("startS"), f"{what}.startS"),
        end_s=_number(entry.get("endS"), f"{what}.endS"),
        success=success,
        palign=0.0 if palign is None else _number(palign, f"{what}.palign"),
    )


def parse_timestamped_lyrics(data: object) -> TimestampedLyrics:
    """get-timestamped-lyrics' ``data`` as :class:`TimestampedLyrics`.

    ``alignedWords`` and ``waveformData`` may be null or absent (an
    instrumental: no words), and so may ``data`` itself. Times are passed on
    as Suno gave them, negative or overlapping ones included: putting them in
    order is the caption maker's job. ``waveformData`` is clamped to 0–1.
    """
    if data is None:
        return TimestampedLyrics()
    body = require_mapping(data, "timestamped-lyrics data")
    words = _list(body.get("alignedWords"), "timestamped-lyrics data.alignedWords")
    wave = _list(body.get("waveformData"), "timestamped-lyrics data.waveformData")
    return TimestampedLyrics(
        aligned_words=tuple(
            _aligned_word(item, f"alignedWords[{i}]") for i, item in enumerate(words)
        ),
        waveform=tuple(
            min(1.0, max(0.0, _number(v, f"waveformData[{i}]"))) for i, v in enumerate(wave)
        ),
    )
