"""Karaoke captions from Suno's aligned words, and the clip's title, as ASS and SRT text.

Pure functions over untrusted text and times: the words come from Suno (or
whoever answers for it) and may carry section tags, newlines, ASS override
syntax (``{\\b1}``, ``\\N``), control and bidi-override characters, emoji,
thousands of entries, and times that are negative, overlapping, out of order
or past the end of the clip. What comes out is always safe to hand to libass:
text escaped, every line at most :data:`LINE_COLUMNS` characters and, when
a ``Measure`` of the font is given, at most :data:`LINE_PX` pixels wide (a
single word that is wider still is squeezed with ``\\fscx``), times sorted,
inside the clip, and never overlapping. Emoji are left out of what libass
draws (no font it can draw them with is installed; they would be boxes) but
kept in the SRT.

The layout is for a 1080×1920 frame and keeps clear of the parts of vertical
video that apps cover with their own buttons: nothing in the top 10% or the
bottom 20% (:data:`SAFE_TOP`, :data:`SAFE_BOTTOM`).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence

from attrs import frozen

from clipjobs.domain.events import AlignedWord

__all__ = [
    "LINE_COLUMNS",
    "LINE_PX",
    "MAX_WORDS",
    "SAFE_BOTTOM",
    "SAFE_TOP",
    "Line",
    "Measure",
    "Word",
    "caption_lines",
    "clean_text",
    "columns",
    "drawable",
    "karaoke_ass",
    "shorten",
    "srt",
    "title_ass",
    "wrap_title",
]

WIDTH, HEIGHT = 1080, 1920
SAFE_TOP = HEIGHT // 10  # 192
SAFE_BOTTOM = HEIGHT - HEIGHT // 5  # 1536
#: A caption line holds at most this many columns (a wide character counts two)…
LINE_COLUMNS = 32
#: …and is at most this many pixels wide (60 px of margin on each side).
LINE_PX = WIDTH - 2 * 60
TITLE_COLUMNS = 24
TITLE_LINES = 2
CHANNEL_COLUMNS = 36
#: More aligned words than this is not a song: the captions are refused.
MAX_WORDS = 20_000
#: A line appears this long before its first word is sung…
LEAD_S = 0.35
#: …and stays this long after its last one, unless the next line needs the place.
HOLD_S = 0.8
#: A pause this long between two words starts a new line.
PAUSE_BREAK_S = 1.5
#: The next line is shown, dimmed, under the current one when it comes within this.
PREVIEW_WITHIN_S = 3.0

#: How wide a text is in the captions' font, in ems (see ``_fontmetrics``).
Measure = Callable[[str], float]

# The styles' sizes in pixels and horizontal scale in percent (ASS Fontsize, ScaleX).
CURRENT_SIZE, NEXT_SIZE, TITLE_SIZE, CHANNEL_SIZE, SCALE_X = 52, 44, 62, 40, 92

# Where things are drawn (libass \pos, anchored as noted).
CHANNEL_TOP = 205  # \an8: top edge
TITLE_TOP = 258  # \an8: top edge; two lines of 62 px end near 410
CURRENT_BOTTOM = 1440  # \an2: bottom edge of the sung line
NEXT_BOTTOM = 1512  # \an2: bottom edge of the line that comes next

_TAG = re.compile(r"\[[^\]\n]{0,60}\]")
# Characters that would reorder or hide the rest of a line (bidi embeddings,
# overrides and isolates) and the byte-order mark; line breaks are handled apart.
_INVISIBLE_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff")
_DROPPED_CATEGORIES = frozenset({"Cc", "Cs", "Co", "Cn"})
_ELLIPSIS = "…"
# Pictographic emoji, their modifiers, variation selectors, keycaps and tag
# sequences, with the joiners between them. (DejaVu draws the older symbols
# of U+2600–U+27BF itself, so those stay.)
_EMOJI = re.compile("(?:[\U0001f000-\U0001faff\U000e0000-\U000e007f\ufe0e\ufe0f\u20e3]\u200d?)+")
# After a backslash, so libass never reads it as the start of \N, \n or \h.
_WORD_JOINER = "\u2060"


@frozen
class Word:
    """One word to show: clean text and its time in the clip, in seconds."""

    text: str
    start: float
    end: float


@frozen
class Line:
    """Words shown together; the first one may start a new section of the song."""

    words: tuple[Word, ...]

    @property
    def start(self) -> float:
        return self.words[0].start

    @property
    def end(self) -> float:
        return self.words[-1].end

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.words)


# --- text --------------------------------------------------------------------


def clean_text(raw: str) -> str:
    """``raw`` with control characters dropped and any run of whitespace made one space."""
    kept = []
    for ch in raw:
        if ch in _INVISIBLE_CONTROLS:
            continue
        if ch.isspace():
            kept.append(" ")
        elif unicodedata.category(ch) not in _DROPPED_CATEGORIES:
            kept.append(ch)
    return " ".join("".join(kept).split())


def _width(ch: str) -> int:
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def columns(text: str) -> int:
    """How wide ``text`` is on screen, in columns: wide (CJK, emoji) characters count two."""
    return sum(_width(ch) for ch in text)


def shorten(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` columns, with an ellipsis when something was cut."""
    if columns(text) <= limit:
        return text
    out, used = [], 0
    for ch in text:
        width = _width(ch)
        if used + width > limit - 1:
            break
        out.append(ch)
        used += width
    return "".join(out).rstrip() + _ELLIPSIS


def drawable(text: str) -> str:
    """``text`` without emoji (libass cannot draw colour emoji), spaces tidied."""
    if not _EMOJI.search(text):
        return text
    return " ".join(_EMOJI.sub("", text).split())


def _ass_escape(text: str) -> str:
    # libass: "\{" and "\}" are literal braces; a backslash followed by an
    # invisible word joiner can never start an escape like \N.
    text = text.replace("\\", "\\" + _WORD_JOINER)
    return text.replace("{", "\\{").replace("}", "\\}")


def _srt_escape(text: str) -> str:
    # SRT has no escapes, but players read <i>-style and {\an8}-style tags in it:
    # a word joiner after the opening character keeps a lyric from becoming one.
    return text.replace("<", "<" + _WORD_JOINER).replace("{", "{" + _WORD_JOINER)


# --- words into lines ----------------------------------------------------------


@frozen
class _Parsed:
    text: str
    start: float
    end: float
    placed: bool
    break_before: bool
    break_after: bool
    order: int


def _parse(words: Sequence[AlignedWord]) -> list[_Parsed]:
    parsed = []
    for order, word in enumerate(words):
        raw = word.word
        untagged = _TAG.sub("\n", raw)
        text = clean_text(untagged)
        head, tail = untagged.lstrip(" \t"), untagged.rstrip(" \t")
        parsed.append(
            _Parsed(
                text=shorten(text, LINE_COLUMNS),
                start=word.start_s,
                end=word.end_s,
                placed=word.success,
                break_before=head.startswith(("\n", "\r")),
                break_after=tail.endswith(("\n", "\r")),
                order=order,
            )
        )
    return parsed


def _timed(parsed: list[_Parsed], duration_s: float) -> list[_Parsed]:
    """Words with usable times, sorted, not overlapping, inside ``[0, duration_s]``."""
    timed: list[_Parsed] = []
    last_end = 0.0
    for p in parsed:
        start, end = p.start, p.end
        if not p.placed or not (math.isfinite(start) and math.isfinite(end)):
            # The aligner could not place it: show it with the word before it.
            start = end = last_end
        start = max(0.0, float(start))
        end = max(start, float(end))
        last_end = end
        timed.append(_Parsed(p.text, start, end, True, p.break_before, p.break_after, p.order))
    timed.sort(key=lambda p: (p.start, p.order))
    out: list[_Parsed] = []
    for i, p in enumerate(timed):
        if p.start >= duration_s:
            break
        end = min(p.end, duration_s)
        if i + 1 < len(timed):
            end = min(end, timed[i + 1].start)  # overlapping words: the next one wins
        out.append(_Parsed(p.text, p.start, end, True, p.break_before, p.break_after, p.order))
    return out


def _px(measure: Measure | None, text: str, size: int) -> float:
    return 0.0 if measure is None else measure(drawable(text)) * size * SCALE_X / 100


def caption_lines(
    words: Sequence[AlignedWord], duration_s: float, measure: Measure | None = None
) -> tuple[Line, ...]:
    """Suno's aligned words as caption lines for the first ``duration_s`` seconds.

    Section tags (``[Verse]``, ``[Chorus]``) and newlines end a line and are
    not shown; so does a pause of :data:`PAUSE_BREAK_S`. A line holds at most
    :data:`LINE_COLUMNS` columns (a longer word is cut, with an ellipsis) and,
    with ``measure``, at most :data:`LINE_PX` pixels of the sung line's font.
    Times are sorted (a stable sort: equal times keep Suno's order), negative
    ones become 0, overlapping words are cut at the next one's start, and a
    word the aligner could not place (``success: false``) is shown with the
    word before it. Words that are empty once cleaned are skipped.

    Raises ValueError when there are more than :data:`MAX_WORDS` words.
    """
    if len(words) > MAX_WORDS:
        raise ValueError(f"{len(words)} aligned words is more than {MAX_WORDS}")
    lines: list[Line] = []
    current: list[Word] = []
    used = 0
    pending_break = False
    for p in _timed(_parse(words), duration_s):
        pending_break = pending_break or p.break_before
        if not p.text:
            pending_break = pending_break or p.break_after
            continue
        width = columns(p.text)
        if current and (
            pending_break
            or used + 1 + width > LINE_COLUMNS
            or p.start - current[-1].end >= PAUSE_BREAK_S
            or _px(measure, Line((*current, Word(p.text, 0, 0))).text, CURRENT_SIZE) > LINE_PX
        ):
            lines.append(Line(tuple(current)))
            current, used = [], 0
        current.append(Word(p.text, p.start, p.end))
        used += width + (1 if used else 0)
        pending_break = p.break_after
    if current:
        lines.append(Line(tuple(current)))
    return tuple(lines)


# --- ASS -----------------------------------------------------------------------


def _cs(seconds: float) -> int:
    return max(0, round(seconds * 100))


def _ass_time(cs: int) -> str:
    h, rest = divmod(cs, 360_000)
    m, rest = divmod(rest, 6000)
    s, c = divmod(rest, 100)
    return f"{h}:{m:02d}:{s:02d}.{c:02d}"


def _header(font: str, styles: Iterable[str]) -> str:
    fields = (
        "Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, "
        "Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, "
        "Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding"
    )
    lines = [
        "[Script Info]",
        "; made by clipjobs_ffmpeg from Suno's timestamped lyrics",
        "ScriptType: v4.00+",
        f"PlayResX: {WIDTH}",
        f"PlayResY: {HEIGHT}",
        # No automatic wrapping: lines are measured here, and a wrapped one could
        # grow into the bottom of the frame.
        "WrapStyle: 2",
        "ScaledBorderAndShadow: yes",
        "",
        "[V4+ Styles]",
        f"Format: {fields}",
        *(f"Style: {style.format(font=font.replace(',', ' '))}" for style in styles),
        "",
        "[Events]",
        "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text",
    ]
    return "\n".join(lines) + "\n"


# Colours are &HAABBGGRR. Sung words turn gold (primary); those to come are white
# (secondary); a thick dark outline keeps both readable over any cover.
_KARAOKE_STYLES = (
    f"Current,{{font}},{CURRENT_SIZE},&H0000D7FF,&H00FFFFFF,&H00101010,&H78000000,"
    f"-1,0,0,0,{SCALE_X},100,0,0,1,3.5,1.5,2,40,40,0,1",
    f"Next,{{font}},{NEXT_SIZE},&H40DCDCDC,&H40DCDCDC,&H40101010,&H96000000,"
    f"-1,0,0,0,{SCALE_X},100,0,0,1,3,1,2,40,40,0,1",
)
# No letter spacing anywhere: it would break the joining of Arabic letters.
_TITLE_STYLES = (
    f"Title,{{font}},{TITLE_SIZE},&H00FFFFFF,&H00FFFFFF,&H00101010,&H78000000,"
    f"-1,0,0,0,{SCALE_X},100,0,0,1,4,2,8,40,40,0,1",
    f"Channel,{{font}},{CHANNEL_SIZE},&H00E6E6E6,&H00E6E6E6,&H00101010,&H78000000,"
    f"-1,0,0,0,{SCALE_X},100,0,0,1,3,1,8,40,40,0,1",
)


def _squeeze(measure: Measure | None, text: str, size: int) -> str:
    """A ``\\fscx`` override that narrows ``text`` to :data:`LINE_PX` if it is wider."""
    px = _px(measure, text, size)
    if px <= LINE_PX:
        return ""
    return f"\\fscx{math.floor(SCALE_X * LINE_PX / px)}"


def _dialogue(start_cs: int, end_cs: int, style: str, text: str, layer: int = 0) -> str:
    return f"Dialogue: {layer},{_ass_time(start_cs)},{_ass_time(end_cs)},{style},,0,0,0,,{text}"


def _windows(lines: Sequence[Line], duration_s: float) -> list[tuple[int, int]]:
    """When each line is on screen, in centiseconds: never overlapping, inside the clip."""
    end_cs = _cs(duration_s)
    windows: list[tuple[int, int]] = []
    previous_end = 0
    for i, line in enumerate(lines):
        first, last = _cs(line.start), _cs(line.end)
        start = max(previous_end, first - _cs(LEAD_S), 0)
        stop = last + _cs(HOLD_S)
        if i + 1 < len(lines):
            stop = min(stop, max(last, _cs(lines[i + 1].start) - _cs(LEAD_S)))
        stop = min(max(stop, start + 1), end_cs)
        windows.append((start, stop))
        previous_end = stop
    return windows


def karaoke_ass(
    lines: Sequence[Line], duration_s: float, font: str, measure: Measure | None = None
) -> str:
    """An ASS document singing ``lines`` word by word (``\\k``), the next line under it."""
    windows = _windows(lines, duration_s)
    events = []
    for i, (line, (start, stop)) in enumerate(zip(lines, windows, strict=True)):
        if start >= stop:
            continue
        fit = _squeeze(measure, line.text, CURRENT_SIZE)
        parts = [f"{{\\an2\\pos({WIDTH // 2},{CURRENT_BOTTOM}){fit}}}"]
        lead = _cs(line.start) - start
        if lead > 0:
            parts.append(f"{{\\k{lead}}}")
        for j, word in enumerate(line.words):
            until = line.words[j + 1].start if j + 1 < len(line.words) else line.end
            k = max(0, _cs(until) - _cs(word.start))
            gap = " " if j + 1 < len(line.words) else ""
            parts.append(f"{{\\k{k}}}{_ass_escape(drawable(word.text))}{gap}")
        events.append(_dialogue(start, stop, "Current", "".join(parts), layer=1))
        if i + 1 < len(lines) and lines[i + 1].start - line.end <= PREVIEW_WITHIN_S:
            text = lines[i + 1].text
            fit = _squeeze(measure, text, NEXT_SIZE)
            preview = f"{{\\an2\\pos({WIDTH // 2},{NEXT_BOTTOM}){fit}}}"
            events.append(_dialogue(start, stop, "Next", preview + _ass_escape(drawable(text))))
    return _header(font, _KARAOKE_STYLES) + "".join(e + "\n" for e in events)


def wrap_title(title: str) -> list[str]:
    """The title in at most two lines of :data:`TITLE_COLUMNS`, an ellipsis if it is longer."""
    words = drawable(clean_text(title)).split(" ")
    lines: list[str] = []
    current = ""
    rest = [w for w in words if w]
    while rest and len(lines) < TITLE_LINES:
        word = rest[0]
        candidate = f"{current} {word}" if current else word
        if columns(candidate) <= TITLE_COLUMNS:
            current = candidate
            rest.pop(0)
            continue
        if not current:  # one word wider than a line: split it
            head = shorten(word, TITLE_COLUMNS + 1)[:-1]
            current = head
            rest[0] = word[len(head) :]
        lines.append(current)
        current = ""
    if current and len(lines) < TITLE_LINES:
        lines.append(current)
    if rest and lines:
        # What did not fit is more than a line's room, so this ends in an ellipsis.
        lines[-1] = shorten(lines[-1] + " " + rest[0], TITLE_COLUMNS)
    return lines


def title_ass(title: str, channel: str | None, font: str, measure: Measure | None = None) -> str:
    """An ASS document drawing the channel name and the title, over one still frame."""
    events = []
    forever = 99 * 360_000
    if channel:
        name = shorten(drawable(clean_text(channel)), CHANNEL_COLUMNS)
        if name:
            fit = _squeeze(measure, name, CHANNEL_SIZE)
            text = f"{{\\an8\\pos({WIDTH // 2},{CHANNEL_TOP}){fit}}}{_ass_escape(name)}"
            events.append(_dialogue(0, forever, "Channel", text))
    lines = wrap_title(title)
    if lines:
        # One squeeze for both lines (the wider one decides), so that they match.
        widest = max(lines, key=lambda line: _px(measure, line, TITLE_SIZE))
        fit = _squeeze(measure, widest, TITLE_SIZE)
        body = "\\N".join(_ass_escape(line) for line in lines)
        where = f"{{\\an8\\pos({WIDTH // 2},{TITLE_TOP}){fit}}}"
        events.append(_dialogue(0, forever, "Title", where + body))
    return _header(font, _TITLE_STYLES) + "".join(e + "\n" for e in events)


# --- SRT -----------------------------------------------------------------------


def _srt_time(cs: int) -> str:
    h, rest = divmod(cs, 360_000)
    m, rest = divmod(rest, 6000)
    s, c = divmod(rest, 100)
    return f"{h:02d}:{m:02d}:{s:02d},{c * 10:03d}"


def srt(lines: Sequence[Line], duration_s: float) -> str:
    """The lines as SubRip cues, on screen when the karaoke shows them."""
    cues: list[str] = []
    windows = _windows(lines, duration_s)
    for line, (start, stop) in zip(lines, windows, strict=True):
        if start >= stop:
            continue
        cues.append(
            f"{len(cues) + 1}\n{_srt_time(start)} --> {_srt_time(stop)}\n{_srt_escape(line.text)}\n"
        )
    return "\n".join(cues)
