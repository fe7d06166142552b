"""How wide text is in a TrueType font: the advance widths libass will lay it out with.

Counting characters cannot keep a caption inside the frame: in DejaVu Sans
Bold "Ж" is almost twice as wide as "i". This reads the three tables that
decide a character's width (``cmap``: character → glyph, ``hmtx``/``hhea``:
glyph → advance, ``head``: units per em) — enough to measure a line before
it is drawn, without a font library. Characters the font lacks (libass takes
them from a fallback font, if any) are counted as wide as an ideograph.
"""

from __future__ import annotations

import struct
from functools import cache
from pathlib import Path

__all__ = ["FontMetrics"]

#: The width assumed for a character the font lacks, in ems (CJK fallbacks are 1 em).
_MISSING_EM = 1.0


class FontMetrics:
    """Advance widths of one TrueType font, by character."""

    def __init__(self, advances: dict[int, int], units_per_em: int) -> None:
        self._advances = advances
        self._em = float(units_per_em)

    @classmethod
    def load(cls, path: Path) -> FontMetrics:
        """Read ``path``; ValueError when it is not a TrueType font this can read."""
        return _load(str(path))

    def covers(self, ch: str) -> bool:
        return ord(ch) in self._advances

    def width_em(self, text: str) -> float:
        """How wide ``text`` is, in ems (multiply by the font size in pixels)."""
        total = 0.0
        for ch in text:
            advance = self._advances.get(ord(ch))
            total += _MISSING_EM if advance is None else advance / self._em
        return total


@cache
def _load(path: str) -> FontMetrics:
    data = Path(path).read_bytes()
    try:
        tables = _tables(data)
        units_per_em = struct.unpack_from(">H", data, tables["head"] + 18)[0]
        metrics_count = struct.unpack_from(">H", data, tables["hhea"] + 34)[0]
        hmtx = tables["hmtx"]
        widths = [struct.unpack_from(">H", data, hmtx + 4 * i)[0] for i in range(metrics_count)]
        glyphs = _cmap(data, tables["cmap"])
    except (KeyError, struct.error, IndexError) as exc:
        raise ValueError(f"{path} is not a TrueType font with cmap, hmtx and head") from exc
    if not units_per_em or not widths:
        raise ValueError(f"{path} has no usable metrics")
    # Glyphs past the last long metric share its advance (monospaced tails).
    advances = {
        code: widths[glyph] if glyph < len(widths) else widths[-1]
        for code, glyph in glyphs.items()
        if glyph
    }
    return FontMetrics(advances, units_per_em)


def _tables(data: bytes) -> dict[str, int]:
    (count,) = struct.unpack_from(">H", data, 4)
    found = {}
    for i in range(count):
        tag, _checksum, offset, _length = struct.unpack_from(">4sIII", data, 12 + 16 * i)
        found[tag.decode("latin-1")] = offset
    return found


def _cmap(data: bytes, cmap: int) -> dict[int, int]:
    """Character → glyph from the best Unicode subtable (format 12, else format 4)."""
    _version, count = struct.unpack_from(">HH", data, cmap)
    subtables: dict[tuple[int, int], int] = {}
    for i in range(count):
        platform, encoding, offset = struct.unpack_from(">HHI", data, cmap + 4 + 8 * i)
        subtables[(platform, encoding)] = cmap + offset
    for key in ((3, 10), (0, 4), (0, 6)):
        if key in subtables and struct.unpack_from(">H", data, subtables[key])[0] == 12:
            return _format12(data, subtables[key])
    for key in ((3, 1), (0, 3), (0, 1), (0, 0)):
        if key in subtables and struct.unpack_from(">H", data, subtables[key])[0] == 4:
            return _format4(data, subtables[key])
    raise KeyError("no Unicode cmap subtable of format 4 or 12")


def _format12(data: bytes, at: int) -> dict[int, int]:
    (groups,) = struct.unpack_from(">I", data, at + 12)
    glyphs = {}
    for i in range(groups):
        start, end, glyph = struct.unpack_from(">III", data, at + 16 + 12 * i)
        for code in range(start, min(end, 0x10FFFF) + 1):
            glyphs[code] = glyph + code - start
    return glyphs


def _format4(data: bytes, at: int) -> dict[int, int]:
    segments = struct.unpack_from(">H", data, at + 6)[0] // 2
    ends = at + 14
    starts = ends + 2 * segments + 2
    deltas = starts + 2 * segments
    range_offsets = deltas + 2 * segments
    glyphs = {}
    for s in range(segments):
        end = struct.unpack_from(">H", data, ends + 2 * s)[0]
        start = struct.unpack_from(">H", data, starts + 2 * s)[0]
        delta = struct.unpack_from(">h", data, deltas + 2 * s)[0]
        where = range_offsets + 2 * s
        range_offset = struct.unpack_from(">H", data, where)[0]
        for code in range(start, end + 1):
            if code == 0xFFFF:
                continue
            if range_offset == 0:
                glyph = (code + delta) & 0xFFFF
            else:
                glyph = struct.unpack_from(">H", data, where + range_offset + 2 * (code - start))[0]
                if glyph:
                    glyph = (glyph + delta) & 0xFFFF
            glyphs[code] = glyph
    return glyphs
