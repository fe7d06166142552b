"""The fake Suno's state and payloads, without any I/O: config, tasks, what Suno would say.

A task's progress is a pure function of its scenario, its timings and the
time since it was created, so record-info and the callbacks always agree.
Payload shapes follow ``suno-api-notes.md``: callbacks snake_case (except
``callbackType`` and ``createTime``), record-info camelCase, ``response``
null while pending, the second track's audio URL empty at ``first``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any, Final

import attrs
from attrs import define, field, frozen

from clipjobs.domain.events import ProviderStatus

__all__ = [
    "API_MESSAGES",
    "SCENARIOS",
    "Delivery",
    "FakeConfig",
    "FakeTask",
    "Stage",
    "apply_config",
    "callback_payload",
    "config_json",
    "record_info_data",
    "redact_url",
    "stage_at",
    "status_at",
    "task_json",
    "timeline",
    "timestamped_lyrics",
]

#: Every scenario ``POST /_fake/config`` accepts (``maintenance`` answers 455).
SCENARIOS: Final = (
    "success",
    "no-callback",
    "duplicate-callbacks",
    "generate-failed",
    "sensitive-word",
    "stuck",
    "rate-limited",
    "server-error",
    "maintenance",
)

#: Suno's ``msg`` for each synchronous code, as the fake answers them.
API_MESSAGES: Final[Mapping[int, str]] = {
    200: "success",
    400: "Invalid parameters.",
    401: "You do not have access permissions.",
    404: "Not found: check the path and the method.",
    405: "Rate limit exceeded.",
    413: "The prompt, style or title is too long.",
    429: "The current credits are insufficient. Please top up.",
    430: "Your call frequency is too high. Please try again later.",
    455: "The system is under maintenance. Please try again later.",
    500: "Server error. Please try again later.",
}

#: The media files' real durations (see media/README.md).
TRACK_SECONDS: Final = {1: 4.08, 2: 3.06}
MEDIA_DIR: Final = Path(__file__).parent / "media"

_AUDIO_FAILED_CODE = 501
_AUDIO_FAILED_MSG = "Audio generation failed."
_SENSITIVE_CODE = 400
_SENSITIVE_MSG = "The prompt contains sensitive words and cannot be generated."


def _non_negative_int(name: str, value: object, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}")
    return value


def _seconds(name: str, value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(f"{name} must be a number of seconds >= 0")
    return float(value)


def _scenario(_: str, value: object) -> str:
    if value not in SCENARIOS:
        raise ValueError(f"scenario must be one of {', '.join(SCENARIOS)}")
    return str(value)


def _error_code(name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 100 <= value <= 999:
        raise ValueError(f"{name} must be null or a code from 100 to 999")
    return value


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false")
    return value


def _lyrics(name: str, value: object) -> tuple[dict[str, Any], ...] | None:
    if value is None:
        return None
    if not isinstance(value, list | tuple) or not all(isinstance(w, dict) for w in value):
        raise ValueError(f"{name} must be null or a list of alignedWords objects")
    return tuple(dict(w) for w in value)


@frozen
class FakeConfig:
    """How the fake behaves; ``POST /_fake/config`` changes any of these by name."""

    credits: int = 100
    scenario: str = "success"
    text_after_s: float = 1.0
    first_after_s: float = 2.0
    complete_after_s: float = 3.0
    #: Credits one generate request costs.
    generate_cost: int = 1
    #: Suno's documented limit: 20 requests per 10 s per account.
    rate_limit: int = 20
    rate_window_s: float = 10.0
    #: The receiver must answer within 15 s; Suno retries 3 times, then stops.
    callback_timeout_s: float = 15.0
    callback_retries: int = 3
    callback_retry_delay_s: float = 1.0
    #: When set, every API call answers this code (and, with ``error_http``, HTTP status).
    error_code: int | None = None
    error_http: bool = False
    #: When set, get-timestamped-lyrics alone answers this code (the rest works).
    lyrics_error_code: int | None = None
    #: When set, get-timestamped-lyrics answers these ``alignedWords`` for every lyrics
    #: track, as given (odd words and times included: tests of what a renderer survives).
    lyrics: tuple[dict[str, Any], ...] | None = None


_CHECKS: Mapping[str, Callable[[str, object], Any]] = {
    "credits": _non_negative_int,
    "scenario": _scenario,
    "text_after_s": _seconds,
    "first_after_s": _seconds,
    "complete_after_s": _seconds,
    "generate_cost": _non_negative_int,
    "rate_limit": lambda n, v: _non_negative_int(n, v, 1),
    "rate_window_s": _seconds,
    "callback_timeout_s": _seconds,
    "callback_retries": _non_negative_int,
    "callback_retry_delay_s": _seconds,
    "error_code": _error_code,
    "error_http": _flag,
    "lyrics_error_code": _error_code,
    "lyrics": _lyrics,
}


def apply_config(config: FakeConfig, changes: Mapping[str, object]) -> FakeConfig:
    """``config`` with ``changes``; ValueError (one clear sentence) when they make no sense."""
    unknown = sorted(set(changes) - set(_CHECKS))
    if unknown:
        raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
    checked: dict[str, Any] = {n: _CHECKS[n](n, v) for n, v in changes.items()}
    new = attrs.evolve(config, **checked)
    if not new.text_after_s <= new.first_after_s <= new.complete_after_s:
        raise ValueError("text_after_s <= first_after_s <= complete_after_s must hold")
    if new.callback_timeout_s <= 0:
        raise ValueError("callback_timeout_s must be more than 0")
    return new


def config_json(config: FakeConfig) -> dict[str, Any]:
    return attrs.asdict(config)


class Stage:
    """The callback stages, by their ``callbackType``."""

    TEXT: Final = "text"
    FIRST: Final = "first"
    COMPLETE: Final = "complete"
    ERROR: Final = "error"


@define
class Delivery:
    """One attempt to POST a callback, and how the receiver answered."""

    stage: str
    attempt: int
    at: datetime
    status: int | None = None
    answer: str | None = None
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status == 200


@define
class FakeTask:
    """A generation the fake accepted, with everything it needs to play it out."""

    task_id: str
    created_at: datetime
    origin: str
    body: dict[str, Any]
    scenario: str
    text_after_s: float
    first_after_s: float
    complete_after_s: float
    deliveries: list[Delivery] = field(factory=list)

    @property
    def callback_url(self) -> str:
        return str(self.body.get("callBackUrl", ""))

    @property
    def model(self) -> str:
        return str(self.body.get("model", ""))


def timeline(task: FakeTask) -> list[tuple[str, float]]:
    """The stages the task goes through, each with its time after creation."""
    text = (Stage.TEXT, task.text_after_s)
    if task.scenario == "stuck":
        return []
    if task.scenario == "sensitive-word":
        return [(Stage.ERROR, task.text_after_s)]
    if task.scenario == "generate-failed":
        return [text, (Stage.ERROR, task.first_after_s)]
    return [text, (Stage.FIRST, task.first_after_s), (Stage.COMPLETE, task.complete_after_s)]


def stage_at(task: FakeTask, now: datetime) -> str | None:
    """The last stage the task has reached at ``now`` (None: still pending)."""
    elapsed = (now - task.created_at).total_seconds()
    reached = None
    for stage, after in timeline(task):
        if elapsed >= after:
            reached = stage
    return reached


def _failure(task: FakeTask) -> tuple[ProviderStatus, int, str]:
    if task.scenario == "sensitive-word":
        return ProviderStatus.SENSITIVE_WORD_ERROR, _SENSITIVE_CODE, _SENSITIVE_MSG
    return ProviderStatus.GENERATE_AUDIO_FAILED, _AUDIO_FAILED_CODE, _AUDIO_FAILED_MSG


_STATUS = {
    None: ProviderStatus.PENDING,
    Stage.TEXT: ProviderStatus.TEXT_SUCCESS,
    Stage.FIRST: ProviderStatus.FIRST_SUCCESS,
    Stage.COMPLETE: ProviderStatus.SUCCESS,
}


def status_at(task: FakeTask, now: datetime) -> ProviderStatus:
    stage = stage_at(task, now)
    if stage == Stage.ERROR:
        return _failure(task)[0]
    return _STATUS[stage]


def _track_id(task_id: str, n: int) -> str:
    # Suno's track ids look like UUIDs; derive them so every answer agrees.
    h = hashlib.sha256(f"{task_id}/{n}".encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def _track(task: FakeTask, n: int, stage: str, *, snake: bool) -> dict[str, Any]:
    """Track ``n`` (1 or 2) as it looks at ``stage``: audio for track 2 only when complete."""
    ready = stage == Stage.COMPLETE or (stage == Stage.FIRST and n == 1)
    base = f"{task.origin}/files/{task.task_id}/{n}"
    audio = f"{base}.mp3" if ready else ""
    prompt = task.body.get("prompt") or ""
    style = task.body.get("style") or "fake, demo"
    title = task.body.get("title") or f"Fake Suno song {n}"
    values: dict[tuple[str, str], object] = {
        ("id", "id"): _track_id(task.task_id, n),
        ("audio_url", "audioUrl"): audio,
        ("stream_audio_url", "streamAudioUrl"): f"{task.origin}/stream/{task.task_id}/{n}",
        ("image_url", "imageUrl"): f"{base}.jpeg",
        ("prompt", "prompt"): prompt,
        ("model_name", "modelName"): "chirp-" + task.model.lower().replace("_", "-"),
        ("title", "title"): title,
        ("tags", "tags"): style,
        ("createTime", "createTime"): int(task.created_at.timestamp() * 1000),
        ("duration", "duration"): TRACK_SECONDS[n] if ready else None,
    }
    if stage == Stage.COMPLETE:
        values[("source_audio_url", "sourceAudioUrl")] = audio
    return {(snake_name if snake else camel): v for (snake_name, camel), v in values.items()}


def _tracks(task: FakeTask, stage: str | None, *, snake: bool) -> list[dict[str, Any]]:
    if stage in (Stage.FIRST, Stage.COMPLETE):
        return [_track(task, n, stage, snake=snake) for n in (1, 2)]
    return []


_CALLBACK_MSG = {
    Stage.TEXT: "Text generation completed.",
    Stage.FIRST: "First audio generated successfully.",
    Stage.COMPLETE: "All generated successfully.",
}


def callback_payload(task: FakeTask, stage: str) -> dict[str, Any]:
    """The body Suno POSTs to ``callBackUrl`` at ``stage``."""
    if stage == Stage.ERROR:
        _, code, message = _failure(task)
        data: dict[str, Any] = {"callbackType": stage, "task_id": task.task_id, "data": None}
        return {"code": code, "msg": message, "data": data}
    data = {
        "callbackType": stage,
        "task_id": task.task_id,
        "data": _tracks(task, stage, snake=True),
    }
    return {"code": 200, "msg": _CALLBACK_MSG[stage], "data": data}


def record_info_data(task: FakeTask, now: datetime) -> dict[str, Any]:
    """record-info's ``data`` for the task at ``now``."""
    stage = stage_at(task, now)
    status = status_at(task, now)
    error_code: int | None = None
    error_message: str | None = None
    if status.is_failure:
        _, error_code, error_message = _failure(task)
    response: dict[str, Any] | None = None
    if stage is not None and status is not ProviderStatus.SENSITIVE_WORD_ERROR:
        response = {"taskId": task.task_id, "sunoData": _tracks(task, stage, snake=False)}
    param = {k: v for k, v in task.body.items() if k != "callBackUrl"}
    return {
        "taskId": task.task_id,
        "parentMusicId": "",
        "param": json.dumps(param, ensure_ascii=False),
        "response": response,
        "status": status.value,
        "type": "chirp-" + task.model.lower().replace("_", "-"),
        "operationType": "generate",
        "errorCode": error_code,
        "errorMessage": error_message,
    }


#: What the fake "sings" when the request did not carry lyrics (non-custom mode).
DEFAULT_LYRICS: Final = """[Verse]
Тихий город, ночь без края
[Chorus]
Мы поём, и мир светлее,
эта песня обо мне
"""
_TAG = re.compile(r"^\s*\[[^\]\n]{1,40}\]\s*$")
#: Where the first word starts, and how long words and pauses last, in seconds.
_FIRST_WORD_S = 0.35
_WORD_S = 0.12
_PER_CHAR_S = 0.045
_GAP_S = 0.06
_LINE_PAUSE_S = 0.2
_SECTION_PAUSE_S = 0.4
_END_MARGIN_S = 0.2


@cache
def _waveforms() -> dict[str, list[float]]:
    # Computed once from the MP3s with ffmpeg and committed (media/README.md):
    # the fake must run where ffmpeg is missing.
    data: dict[str, list[float]] = json.loads((MEDIA_DIR / "waveforms.json").read_text())
    return data


def _sung_words(lyrics: str) -> list[str]:
    """Suno's ``word`` strings: a section tag and a newline before a section's first word,
    a newline after each line's last word."""
    words: list[str] = []
    tag = ""
    for line in lyrics.splitlines():
        if _TAG.match(line):
            tag = line.strip() + "\n"
            continue
        tokens = line.split()
        for i, token in enumerate(tokens):
            text = tag + token
            tag = ""
            words.append(text + "\n" if i == len(tokens) - 1 else text)
    return words


def _aligned(words: list[str], seconds: float) -> list[dict[str, Any]]:
    """The words placed at a singing pace, as many as fit in ``seconds``."""
    placed: list[dict[str, Any]] = []
    at = _FIRST_WORD_S
    for n, text in enumerate(words):
        sung = text.strip().split("\n")[-1]  # without the section tag
        if n and text.startswith("["):
            at += _SECTION_PAUSE_S
        end = at + _WORD_S + _PER_CHAR_S * len(sung)
        if end > seconds - _END_MARGIN_S:
            break
        placed.append(
            {
                "word": text,
                "success": True,
                "startS": round(at, 2),
                "endS": round(end, 2),
                "palign": 0,
            }
        )
        at = end + _GAP_S + (_LINE_PAUSE_S if text.endswith("\n") else 0.0)
    return placed


def timestamped_lyrics(
    task: FakeTask, audio_id: str, now: datetime, config: FakeConfig
) -> tuple[int, str | None, dict[str, Any] | None]:
    """get-timestamped-lyrics for one of the task's tracks: ``(code, msg, data)``.

    Lyrics exist once the track's audio does; an instrumental has no words
    but still a waveform. The words are the request's lyrics (the prompt, in
    custom mode) or :data:`DEFAULT_LYRICS`.
    """
    numbers = {_track_id(task.task_id, n): n for n in (1, 2)}
    n = numbers.get(audio_id)
    if n is None:
        return 400, f"Audio {audio_id[:64]} does not belong to task {task.task_id}.", None
    stage = stage_at(task, now)
    if not (stage == Stage.COMPLETE or (stage == Stage.FIRST and n == 1)):
        return 400, "The audio is not generated yet.", None
    if config.lyrics_error_code is not None:
        return config.lyrics_error_code, None, None
    waveform = _waveforms()[f"track-{n}.mp3"]
    words: list[dict[str, Any]] = []
    if not task.body.get("instrumental"):
        if config.lyrics is not None:
            words = [dict(w) for w in config.lyrics]
        else:
            prompt = str(task.body.get("prompt") or "")
            custom = bool(task.body.get("customMode")) and prompt.strip()
            words = _aligned(_sung_words(prompt if custom else DEFAULT_LYRICS), TRACK_SECONDS[n])
    data = {
        "alignedWords": words,
        "waveformData": waveform,
        "hootCer": 0.0 if not words else 0.12,
        "isStreamed": False,
    }
    return 200, None, data


_TOKEN = re.compile(r"(?i)([?&](?:token|key|secret|sig)[^=&]*=)[^&#]*")


def redact_url(url: str) -> str:
    """A callback URL fit for a listing: its token-like query values hidden."""
    return _TOKEN.sub(lambda m: m.group(1) + "***", url)


def task_json(task: FakeTask, now: datetime) -> dict[str, Any]:
    """A task as ``GET /_fake/tasks`` lists it."""
    return {
        "taskId": task.task_id,
        "createdAt": task.created_at.isoformat(),
        "scenario": task.scenario,
        "status": status_at(task, now).value,
        "model": task.model,
        "callBackUrl": redact_url(task.callback_url),
        "timeline": [{"callbackType": s, "afterS": after} for s, after in timeline(task)],
        "deliveries": [
            {
                "callbackType": d.stage,
                "attempt": d.attempt,
                "at": d.at.isoformat(),
                "status": d.status,
                "answer": d.answer,
                "error": d.error,
            }
            for d in task.deliveries
        ],
    }
