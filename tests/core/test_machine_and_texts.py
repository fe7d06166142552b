"""The stage graph, compiled from the one machine, and the texts people read."""

from __future__ import annotations

import pytest

from clipjobs import TERMINAL_STAGES, Stage
from clipjobs.domain._machine import MACHINE, TABLE
from clipjobs.domain.i18n import pick_language, progress_text, timeout_message

SPEC_STAGES = [
    "STAGE_10_REQUEST_ACCEPTED",
    "STAGE_20_SUNO_REQUEST_SENT",
    "STAGE_30_SUNO_TASK_CREATED",
    "STAGE_40_SUNO_PENDING",
    "STAGE_50_SUNO_SUCCESS",
    "STAGE_60_CLIP_PROCESSING",
    "STAGE_70_CLIP_READY",
    "STAGE_90_FAILED",
    "STAGE_98_CANCELLED",
    "STAGE_99_TIMEOUT",
]


def test_stage_strings_are_the_contract() -> None:
    """The stage enum holds exactly SPEC section 2's strings (and 10.2's), in order."""
    assert [s.value for s in Stage] == SPEC_STAGES
    assert [s.number for s in Stage] == [10, 20, 30, 40, 50, 60, 70, 90, 98, 99]


def test_table_is_compiled_from_the_machine() -> None:
    """Every machine transition is in the table, and nothing else is."""
    edges = {
        (src, trigger, t.dest)
        for trigger, ev in MACHINE.events.items()
        for src, ts in ev.transitions.items()
        for t in ts
    }
    table = {
        (s.value, trig, step.dest.value) for (s, trig), steps in TABLE.items() for step in steps
    }
    assert edges == table


def test_numbers_never_go_down_and_terminals_absorb() -> None:
    """No edge lowers the stage number; 70, 90, 98 and 99 have no way out (only the note that
    records late observations loops on them).
    """
    for (source, _), steps in TABLE.items():
        for step in steps:
            assert step.dest.number >= source.number
    leaving = {source for (source, _), steps in TABLE.items() for s in steps if s.dest != source}
    assert not leaving & {Stage.CLIP_READY, Stage.FAILED, Stage.TIMEOUT}
    assert {(s, t) for (s, t) in TABLE if s in TERMINAL_STAGES} == {
        (s, "note") for s in TERMINAL_STAGES
    }
    assert {Stage.CLIP_READY, Stage.FAILED, Stage.CANCELLED, Stage.TIMEOUT} == TERMINAL_STAGES


def test_post_processing_edges_need_the_condition() -> None:
    """Leaving STAGE_50 needs clip_render; STAGE_60/70 are reachable only through it."""
    for (source, _), steps in TABLE.items():
        if source is Stage.SUNO_SUCCESS:
            leaving = [step for step in steps if step.dest is not source]
            assert all(step.requires == ("clip_render",) for step in leaving)


@pytest.mark.parametrize(
    ("header", "query", "expected"),
    [
        (None, None, "ru"),
        ("en-US,en;q=0.9", None, "en"),
        ("de-DE, en;q=0.5, ru;q=0.8", None, "ru"),
        ("fr", None, "ru"),
        ("en;q=0", None, "ru"),
        ("ru", "en", "en"),
        ("en", "xx", "en"),
        ("en;q=abc, ru", None, "ru"),
    ],
)
def test_language_negotiation(header: str | None, query: str | None, expected: str) -> None:
    """?lang= wins, then Accept-Language by weight, then Russian."""
    assert pick_language(header, query) == expected


def test_texts_match_the_spec() -> None:
    """Progress and timeout texts are SPEC section 2's, in both languages."""
    assert (
        progress_text(Stage.SUNO_PENDING) == "Генерация музыки в процессе (PENDING/GENERATING)..."
    )
    assert progress_text(Stage.CLIP_READY, "en") == "Clip ready!"
    assert timeout_message(600) == (
        "Превышено время ожидания генерации (10 минут). "
        "Проверьте статус в Suno или попробуйте снова."
    )
    assert timeout_message(90, "en") == (
        "Generation timed out (1.5 minutes). Check the task in Suno or try again."
    )
