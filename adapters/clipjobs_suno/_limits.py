"""Suno's request rules for ``POST /api/v1/generate``, shared by the client and the fake.

One table, one checker over the camelCase request body: the client refuses
what Suno would refuse before spending a request, and the fake refuses
exactly the same things, so the two cannot drift apart.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from attrs import frozen

from clipjobs.domain.events import SUNO_MODELS, GenerationParams

__all__ = [
    "MODELS",
    "NON_CUSTOM_PROMPT_MAX",
    "Limits",
    "Problem",
    "check_generate_body",
    "generate_body",
    "limits_for",
]


@frozen
class Limits:
    """Custom-mode length limits of one model, in characters."""

    prompt: int
    style: int
    title: int


_V4 = Limits(prompt=3000, style=200, title=80)
_V4_5ALL = Limits(prompt=5000, style=1000, title=80)
_V4_5 = Limits(prompt=5000, style=1000, title=100)

_LIMITS: Mapping[str, Limits] = {
    "V3_5": _V4,
    "V4": _V4,
    "V4_5ALL": _V4_5ALL,
    "V4_5": _V4_5,
    "V4_5PLUS": _V4_5,
    "V5": _V4_5,
    "V5_5": _V4_5,
}

#: Every model name Suno accepts, in its spelling (named once, in the core).
MODELS: frozenset[str] = frozenset(SUNO_MODELS)
assert frozenset(_LIMITS) == MODELS, "every model Suno accepts has its limits here"

#: In non-custom mode the prompt is a short description, whatever the model.
NON_CUSTOM_PROMPT_MAX = 500

#: Persona fields are ids; nothing Suno issues is longer.
_ID_MAX = 200
#: What an error message may quote of a value it refuses.
_SHOWN_MAX = 40


def limits_for(model: str) -> Limits | None:
    return _LIMITS.get(model)


@frozen
class Problem:
    """Why Suno would refuse a request: its answer ``code`` (400 or 413) and message."""

    code: int
    field: str
    message: str


def generate_body(params: GenerationParams, callback_url: str) -> dict[str, Any]:
    """The JSON body Suno's generate endpoint takes, without empty optional fields."""
    body: dict[str, Any] = {
        "customMode": params.custom_mode,
        "instrumental": params.instrumental,
        "model": params.model,
        "callBackUrl": callback_url,
        "prompt": params.prompt,
    }
    if params.style is not None:
        body["style"] = params.style
    if params.title is not None:
        body["title"] = params.title
    if params.negative_tags is not None:
        body["negativeTags"] = params.negative_tags
    return body


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _shown(value: str) -> str:
    """``value`` quoted for an error message, cut so a huge one is not echoed back."""
    if len(value) <= _SHOWN_MAX:
        return repr(value)
    return repr(value[:_SHOWN_MAX]) + "…[truncated]"


def _too_long(field: str, value: str, limit: int) -> Problem | None:
    if len(value) > limit:
        return Problem(413, field, f"{field} is too long: {len(value)} characters, at most {limit}")
    return None


def _check_optional(body: Mapping[str, Any], limits: Limits) -> Problem | None:
    # Suno documents no limit for negativeTags; it is a list of styles, so the style
    # limit holds. Every text field has a limit: nothing unbounded reaches the log or Suno.
    bounds = {"negativeTags": limits.style, "personaId": _ID_MAX, "personaModel": _ID_MAX}
    for field, limit in bounds.items():
        value = body.get(field)
        if value is None:
            continue
        if not isinstance(value, str):
            return Problem(400, field, f"{field} must be a string")
        if problem := _too_long(field, value, limit):
            return problem
    gender = body.get("vocalGender")
    if gender is not None and gender not in ("m", "f"):
        return Problem(400, "vocalGender", "vocalGender must be 'm' or 'f'")
    for field in ("styleWeight", "weirdnessConstraint", "audioWeight"):
        value = body.get(field)
        if value is None:
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not 0 <= value <= 1
        ):
            return Problem(400, field, f"{field} must be a number from 0 to 1")
    return None


def check_generate_body(body: Mapping[str, Any], *, need_callback: bool = True) -> Problem | None:
    """The first reason Suno would refuse this generate body, or None.

    Missing or mistyped fields are 400s; fields over the model's length limit
    are 413s, as Suno answers them. The limits hold in every mode: Suno's table
    is for custom mode, but a 900,000-character ``style`` sent outside it is no
    more welcome (the prompt's own limit is 500 there). Messages quote at most
    40 characters of a refused value.
    """
    callback = body.get("callBackUrl")
    if need_callback and (_missing(callback) or not isinstance(callback, str)):
        return Problem(400, "callBackUrl", "Please enter callBackUrl.")
    for field in ("customMode", "instrumental"):
        if not isinstance(body.get(field), bool):
            return Problem(400, field, f"{field} is required and must be true or false")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return Problem(400, "model", "model is required")
    limits = limits_for(model)
    if limits is None:
        allowed = ", ".join(sorted(MODELS))
        return Problem(400, "model", f"model {_shown(model)} is not one of {allowed}")
    for field in ("prompt", "style", "title"):
        value = body.get(field)
        if value is not None and not isinstance(value, str):
            return Problem(400, field, f"{field} must be a string")
    prompt: str = body.get("prompt") or ""
    style: str = body.get("style") or ""
    title: str = body.get("title") or ""
    if not body["customMode"]:
        if _missing(prompt):
            return Problem(400, "prompt", "prompt is required in non-custom mode")
        prompt_max = NON_CUSTOM_PROMPT_MAX
    else:
        if not body["instrumental"] and _missing(prompt):
            return Problem(
                400, "prompt", "prompt (the lyrics) is required in custom mode with vocals"
            )
        for field in ("style", "title"):
            if _missing(body.get(field)):
                return Problem(400, field, f"{field} is required in custom mode")
        prompt_max = limits.prompt
    return (
        _too_long("prompt", prompt, prompt_max)
        or _too_long("style", style, limits.style)
        or _too_long("title", title, limits.title)
        or _check_optional(body, limits)
    )
