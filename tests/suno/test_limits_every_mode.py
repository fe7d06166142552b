"""The generate checker bounds every text field in both modes; it quotes little it refuses."""

from __future__ import annotations

import pytest

from clipjobs_suno._limits import check_generate_body


def _body(**fields: object) -> dict[str, object]:
    return {"customMode": False, "instrumental": True, "model": "V4", "prompt": "a song", **fields}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"style": "s" * 201}, "style"),
        ({"title": "t" * 81}, "title"),
        ({"negativeTags": "n" * 201}, "negativeTags"),
        ({"personaId": "p" * 201}, "personaId"),
        (
            {"customMode": True, "style": "rock", "title": "t", "negativeTags": "n" * 201},
            "negativeTags",
        ),
    ],
)
def test_every_field_has_the_models_limit_in_every_mode(
    fields: dict[str, object], field: str
) -> None:
    """V4's style (200) and title (80) limits hold outside custom mode; negativeTags has style's."""
    problem = check_generate_body(_body(**fields), need_callback=False)
    assert problem is not None and problem.field == field and problem.code == 413


def test_at_the_limits_outside_custom_mode_passes() -> None:
    """Exactly at the limits is fine."""
    body = _body(style="s" * 200, title="t" * 80, negativeTags="n" * 200, prompt="p" * 500)
    assert check_generate_body(body, need_callback=False) is None


def test_an_unknown_model_is_quoted_short() -> None:
    """A 900,000-character model name is named by its first 40 characters, marked as cut."""
    problem = check_generate_body(_body(model="m" * 900_000), need_callback=False)
    assert problem is not None and problem.field == "model"
    assert "m" * 40 + "'…[truncated]" in problem.message and len(problem.message) < 200
