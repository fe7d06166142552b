"""Caption lines, ASS and SRT from untrusted words: properties that hold for any input."""

from __future__ import annotations

import itertools
import math
import re
import unicodedata
from pathlib import Path

import pytest
from _ffmpeg_harness import dialogues
from hypothesis import given, settings
from hypothesis import strategies as st

from clipjobs import AlignedWord
from clipjobs_ffmpeg._captions import (
    CHANNEL_COLUMNS,
    CURRENT_BOTTOM,
    CURRENT_SIZE,
    LINE_COLUMNS,
    LINE_PX,
    MAX_WORDS,
    NEXT_BOTTOM,
    SAFE_BOTTOM,
    SAFE_TOP,
    SCALE_X,
    TITLE_COLUMNS,
    TITLE_SIZE,
    TITLE_TOP,
    caption_lines,
    clean_text,
    columns,
    drawable,
    karaoke_ass,
    srt,
    title_ass,
    wrap_title,
)
from clipjobs_ffmpeg._ffmpeg import BOLD_FONT, find_fonts
from clipjobs_ffmpeg._fontmetrics import FontMetrics

try:
    METRICS: FontMetrics | None = FontMetrics.load(find_fonts() / BOLD_FONT)
except Exception:  # no DejaVu here: the width checks skip
    METRICS = None
NEEDS_FONT = pytest.mark.skipif(METRICS is None, reason="apt-get install fonts-dejavu-core")

_times = st.one_of(
    st.floats(min_value=-10, max_value=200, allow_nan=False),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0]),
)
# Lyrics text at its worst: tags, newlines, braces, backslashes, controls, RTL, emoji, CJK.
_text = st.lists(
    st.one_of(
        st.sampled_from(list("{}\\[]\n\r\t N k")),
        st.sampled_from(["[Verse]", "[Chorus]\n", "\u202e", "\x00", "\x1b", "\u2060"]),
        st.sampled_from(list("абвЖШщ שלום مرحبا 中文 🎵🔥👍🏽 e\u0301")),
        st.characters(codec="utf-8"),
    ),
    max_size=16,
).map("".join)
_words = st.lists(
    st.builds(AlignedWord, word=_text, start_s=_times, end_s=_times, success=st.booleans()),
    max_size=60,
)


def _measure(text: str) -> float:
    assert METRICS is not None
    return METRICS.width_em(text)


@NEEDS_FONT
@settings(max_examples=300, deadline=None)
@given(words=_words, duration=st.floats(min_value=0.5, max_value=120))
def test_lines_are_sorted_inside_the_clip_and_fit(
    words: list[AlignedWord], duration: float
) -> None:
    """Whatever Suno sends: words sorted, not overlapping, inside the clip; lines fit the frame."""
    lines = caption_lines(words, duration, _measure)
    shown = [w for line in lines for w in line.words]
    for a, b in itertools.pairwise(shown):
        assert a.start <= b.start and a.end <= b.start
    for word in shown:
        assert 0 <= word.start <= word.end <= duration
        assert word.text and word.text == clean_text(word.text)
        assert not any(unicodedata.category(c) == "Cc" for c in word.text)
    for line in lines:
        assert columns(line.text) <= LINE_COLUMNS
        if len(line.words) > 1:  # a single word may be squeezed instead
            width = _measure(drawable(line.text)) * CURRENT_SIZE * SCALE_X / 100
            assert width <= LINE_PX


@NEEDS_FONT
@settings(max_examples=200, deadline=None)
@given(words=_words, duration=st.floats(min_value=0.5, max_value=120))
def test_ass_is_one_event_per_line_and_reads_back(
    words: list[AlignedWord], duration: float
) -> None:
    """The ASS has well-formed Dialogue lines only, inside the clip, showing the words unchanged."""
    lines = caption_lines(words, duration, _measure)
    ass = karaoke_ass(lines, duration, "DejaVu Sans", _measure)
    body = ass.split("[Events]\n", 1)[1].splitlines()[1:]
    assert all(line.startswith("Dialogue: ") for line in body)
    shown = dialogues(ass)
    assert len(shown) <= len(lines)
    for start, end, _ in shown:
        assert 0 <= start < end <= duration + 0.005
    for a, b in itertools.pairwise(shown):
        assert a[1] <= b[0]
    expected = [drawable(line.text) for line in lines]
    got = [text for _, _, text in shown]
    assert [" ".join(t.split()) for t in got] == [" ".join(t.split()) for t in expected][: len(got)]
    # Every override block is ours: position, squeeze, karaoke timing, nothing else.
    for line in body:
        for block in re.findall(r"(?<!\\)\{([^}]*)(?<!\\)\}", line.split(",", 9)[9]):
            assert re.fullmatch(r"(\\an2\\pos\(\d+,\d+\)(\\fscx\d+)?|\\k\d+)", block), block
    srt_text = srt(lines, duration)
    assert srt_text.count(" --> ") == len(shown)


def test_section_tags_and_pauses_break_lines() -> None:
    """[Verse]/[Chorus] and newlines end a line and are not shown; so does a long pause."""
    words = [
        AlignedWord("[Verse]\nOne", 0.0, 0.2),
        AlignedWord("two\n", 0.2, 0.4),
        AlignedWord("three", 0.4, 0.6),
        AlignedWord("[Chorus]\nFour", 0.6, 0.8),
        AlignedWord("five", 3.0, 3.2),
    ]
    assert [line.text for line in caption_lines(words, 10.0)] == [
        "One two",
        "three",
        "Four",
        "five",
    ]


def test_at_most_32_columns_even_for_one_long_word() -> None:
    """A word longer than a line is cut with an ellipsis; lines are filled up to 32 columns."""
    lines = caption_lines([AlignedWord("x" * 100, 0, 1), AlignedWord("中" * 20, 1, 2)], 5.0)
    assert [line.text for line in lines] == ["x" * 31 + "…", "中" * 15 + "…"]
    assert all(columns(line.text) <= LINE_COLUMNS for line in lines)


def test_more_than_max_words_is_refused() -> None:
    """Over MAX_WORDS aligned words caption_lines refuses with ValueError (the processor's note)."""
    with pytest.raises(ValueError, match="more than"):
        caption_lines([AlignedWord("la", 0, 0.1)] * (MAX_WORDS + 1), 60.0)


def test_karaoke_timing_follows_the_words() -> None:
    """Each word's \\k lasts until the next word starts; a lead-in precedes the first one."""
    words = [AlignedWord("a", 1.0, 1.2), AlignedWord("b", 1.5, 1.7), AlignedWord("c", 1.7, 2.0)]
    ass = karaoke_ass(caption_lines(words, 10.0), 10.0, "DejaVu Sans")
    (line,) = [x for x in ass.splitlines() if x.startswith("Dialogue: 1,")]
    assert line.startswith("Dialogue: 1,0:00:00.65,0:00:02.80,Current,")
    assert line.endswith("{\\k35}{\\k50}a {\\k20}b {\\k30}c")


def test_escaping_keeps_lyrics_literal() -> None:
    """Braces and backslashes are escaped for libass and defused for SRT players."""
    (line,) = caption_lines([AlignedWord("{\\i1}x\\N<i>", 0, 1)], 2.0)
    ass = karaoke_ass([line], 2.0, "DejaVu Sans")
    assert "\\{\\\u2060i1\\}x\\\u2060N<i>" in ass
    assert dialogues(ass)[0][2] == "{\\i1}x\\N<i>"
    assert "{\u2060\\i1}x\\N<\u2060i>" in srt([line], 2.0)


def test_emoji_are_left_out_of_the_picture_but_kept_in_srt() -> None:
    """libass has no emoji font to draw with: the ASS drops them; the SRT keeps them."""
    (line,) = caption_lines([AlignedWord("hi🎵👍🏽", 0, 1), AlignedWord("☀", 1, 2)], 3.0)
    assert dialogues(karaoke_ass([line], 3.0, "DejaVu Sans"))[0][2] == "hi ☀"
    assert "hi🎵👍🏽 ☀" in srt([line], 3.0)


def test_a_300_character_title_is_two_lines_with_an_ellipsis() -> None:
    """A 300-character title becomes at most two lines of 24 columns, the last ending in …."""
    lines = wrap_title("Очень длинное название песни " * 11)
    assert len(lines) == 2 and lines[-1].endswith("…")
    assert all(columns(line) <= TITLE_COLUMNS for line in lines)
    assert wrap_title("x" * 300) == ["x" * 24, "x" * 23 + "…"]
    assert wrap_title("") == [] and wrap_title("Short") == ["Short"]


@NEEDS_FONT
def test_title_and_channel_are_squeezed_to_the_frame() -> None:
    """Wide letters are measured: a title of Ж gets \\fscx so both lines fit 960 px."""
    ass = title_ass("Ж" * 48, "Ш" * 80, "DejaVu Sans", _measure)
    squeezes = [int(x) for x in re.findall(r"\\fscx(\d+)", ass)]
    assert len(squeezes) == 2 and all(0 < s < SCALE_X for s in squeezes)
    assert len(dialogues(ass, "Title")) == 1
    width = _measure("Ж" * TITLE_COLUMNS) * TITLE_SIZE * squeezes[-1] / 100
    assert width <= LINE_PX
    (channel,) = dialogues(ass, "Channel")
    assert columns(channel[2]) <= CHANNEL_COLUMNS


def test_layout_keeps_clear_of_what_apps_cover() -> None:
    """Every position drawn at is below the top 10% and above the bottom 20% of the frame."""
    assert SAFE_TOP == 192 and SAFE_BOTTOM == 1536
    assert SAFE_TOP < TITLE_TOP and CURRENT_BOTTOM < NEXT_BOTTOM < SAFE_BOTTOM - 16


@NEEDS_FONT
def test_font_metrics_cover_the_scripts() -> None:
    """DejaVu Sans Bold has Latin, Cyrillic, Hebrew and Arabic; Ж is wider than i; no emoji."""
    assert METRICS is not None
    for ch in "AaЖжשع\u2060":
        assert METRICS.covers(ch), ch
    assert not METRICS.covers("🎵")
    assert METRICS.width_em("Ж") > 3 * METRICS.width_em("i")


def test_font_metrics_refuse_what_is_not_a_font(tmp_path: Path) -> None:
    """A file that is not TrueType raises ValueError (the processor turns it into ConfigError)."""
    bogus = tmp_path / "bogus.ttf"
    bogus.write_bytes(b"\x00\x01\x00\x00" + b"\x00" * 60)
    with pytest.raises(ValueError, match="not a TrueType font"):
        FontMetrics.load(bogus)
