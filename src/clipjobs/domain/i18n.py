"""The texts people read, in Russian (the default) and English."""

from __future__ import annotations

import math
from typing import Literal

from .events import ClipStep
from .stages import Stage

__all__ = [
    "LANGUAGES",
    "Lang",
    "accepted_message",
    "cancelled_message",
    "clip_step_text",
    "pick_language",
    "progress_text",
    "queue_text",
    "timeout_message",
]

Lang = Literal["ru", "en"]
LANGUAGES: tuple[Lang, ...] = ("ru", "en")

_PROGRESS: dict[Stage, tuple[str, str]] = {
    Stage.REQUEST_ACCEPTED: (
        "Запрос принят, отправляем запрос в Suno...",
        "Request accepted, sending the request to Suno...",
    ),
    Stage.SUNO_REQUEST_SENT: (
        "Запрос отправлен в Suno, ожидаем создания задачи...",
        "Request sent to Suno, waiting for the task to be created...",
    ),
    Stage.SUNO_TASK_CREATED: (
        "Задача создана в Suno, ожидаем генерацию...",
        "Suno task created, waiting for generation...",
    ),
    Stage.SUNO_PENDING: (
        "Генерация музыки в процессе (PENDING/GENERATING)...",
        "Music generation in progress (PENDING/GENERATING)...",
    ),
    Stage.SUNO_SUCCESS: ("Музыка сгенерирована успешно!", "Music generated successfully!"),
    Stage.CLIP_PROCESSING: ("Обрабатываем аудио и видео...", "Processing audio and video..."),
    Stage.CLIP_READY: ("Клип готов!", "Clip ready!"),
    Stage.FAILED: ("Ошибка при генерации", "Generation failed"),
    Stage.CANCELLED: ("Отменено", "Cancelled"),
    Stage.TIMEOUT: ("Превышено время ожидания", "Timed out"),
}

_CLIP_STEPS: dict[ClipStep, tuple[str, str]] = {
    ClipStep.DOWNLOADING: ("Скачиваем аудио...", "Downloading the audio..."),
    ClipStep.RENDERING: ("Рендерим видео...", "Rendering the video..."),
}

_ACCEPTED = (
    "Генерация запущена, используйте GET /api/music-clips/jobs/:jobId для проверки статуса",
    "Generation started, use GET /api/music-clips/jobs/:jobId to check its status",
)


def _pick(pair: tuple[str, str], lang: Lang) -> str:
    return pair[1] if lang == "en" else pair[0]


def progress_text(stage: Stage, lang: Lang = "ru") -> str:
    """The stage's progress text (SPEC section 2)."""
    return _pick(_PROGRESS[stage], lang)


def queue_text(ahead: int, eta_s: float, lang: Lang = "ru") -> str:
    """The progress text of a job waiting for its turn at Suno (SPEC section 10.1)."""
    seconds = math.ceil(eta_s)
    if lang == "en":
        return f"Waiting for Suno: {ahead} ahead, ~{seconds} s"
    return f"В очереди Suno: впереди {ahead}, ~{seconds} с"


def clip_step_text(step: ClipStep, lang: Lang = "ru") -> str:
    """What post-processing is doing now."""
    return _pick(_CLIP_STEPS[step], lang)


def accepted_message(lang: Lang = "ru") -> str:
    """The ``message`` of a 202 answer to runOnce (the seed's text)."""
    return _pick(_ACCEPTED, lang)


def _minutes(timeout_s: int) -> str:
    minutes = timeout_s / 60
    return str(int(minutes)) if minutes == int(minutes) else f"{minutes:.1f}"


_UNCERTAIN = (
    " Запрос мог дойти до Suno, но номер задачи так и не пришёл.",
    " The request may have reached Suno, but no task id ever came back.",
)


_WHY_IDLE = (
    " Suno не сообщал о прогрессе {n} минут.",
    " Suno reported no progress for {n} minutes.",
)
_WHY_AGE = (
    " Задача выполнялась дольше {n} минут в целом.",
    " The job ran longer than {n} minutes in all.",
)


def timeout_message(
    timeout_s: int,
    lang: Lang = "ru",
    *,
    uncertain: bool = False,
    idle: bool = False,
    age: bool = False,
) -> str:
    """The error text of a timed-out job: the seed's text with N minutes of the limit that
    fired, then which limit it was.

    ``idle``: no progress for that long; ``age``: the job ran that long in
    all (neither: a log from before there were two limits). ``uncertain``:
    the generate call may have reached Suno without an answer; the text says
    so, since that is why nothing moved.
    """
    n = _minutes(timeout_s)
    if lang == "en":
        text = f"Generation timed out ({n} minutes). Check the task in Suno or try again."
    else:
        text = (
            f"Превышено время ожидания генерации ({n} минут). "
            "Проверьте статус в Suno или попробуйте снова."
        )
    if idle:
        text += _pick(_WHY_IDLE, lang).format(n=n)
    elif age:
        text += _pick(_WHY_AGE, lang).format(n=n)
    return text + _pick(_UNCERTAIN, lang) if uncertain else text


def cancelled_message(reason: str | None, lang: Lang = "ru") -> str:
    """The error text of a cancelled job, with the reason given, if any."""
    text = "Job cancelled" if lang == "en" else "Задача отменена"
    return f"{text}: {reason}" if reason else text


def pick_language(accept_language: str | None, query: str | None = None) -> Lang:
    """``?lang=`` wins; else the first of ru/en in Accept-Language by weight; else ru."""
    if query:
        q = query.strip().lower()[:2]
        if q in LANGUAGES:
            return q
    if not accept_language:
        return "ru"
    best: tuple[float, int, Lang] | None = None
    for index, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        primary = tag.strip().lower().split("-")[0]
        if primary not in LANGUAGES:
            continue
        weight = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                weight = float(params[2:])
            except ValueError:
                continue
        candidate = (weight, -index, primary)
        if best is None or candidate > best:
            best = candidate
    return best[2] if best and best[0] > 0 else "ru"
