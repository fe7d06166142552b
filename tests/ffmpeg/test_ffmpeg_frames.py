"""Three moments of a lyrics clip, as shown in the ffmpeg README, and what each one proves.

The frames are rendered here from the fake Suno's song and measured; the
PNGs committed in ``docs/img/`` are measured the same way, so the pictures
in the README cannot show something the renderer does not do.
``CLIPJOBS_REGEN_DOCS=1`` rewrites them from this run.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from _ffmpeg_harness import (
    FFMPEG,
    ROOT,
    SMALL_W,
    WITH_FFMPEG,
    Steps,
    edges,
    fake_suno,
    finished_song,
    frame,
    gold,
    mean_diff,
    processor,
    rows,
    song_job,
)

from clipjobs_ffmpeg._captions import CURRENT_BOTTOM, SAFE_BOTTOM, SAFE_TOP, TITLE_TOP
from clipjobs_ffmpeg._ffmpeg import COVER_BOX

pytestmark = WITH_FFMPEG

IMG = ROOT / "docs" / "img"
#: The moments shown: the first word sung, three words into the verse, the chorus.
MOMENTS = {"clip-1.png": 0.55, "clip-2.png": 1.6, "clip-3.png": 3.3}
CAPTIONS = rows(CURRENT_BOTTOM - 80, CURRENT_BOTTOM + 8)
TITLE = rows(TITLE_TOP, TITLE_TOP + 150)
_x, _y, _size, _ = COVER_BOX
COVER = rows(_y + 8, _y + _size - 8)
COVER_COLS = range((_x + 8) // 4, (_x + _size - 8) // 4)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def frames(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Path]]:
    """The fake's lyrics song rendered full-size (10 fps) and its three moments as PNGs."""
    out = tmp_path_factory.mktemp("frames")
    async with fake_suno() as (client, _), aiohttp.ClientSession() as session:
        job = song_job(await finished_song(client))
        proc = processor(
            session,
            out,
            suno=client,
            style="full",
            fps=10.0,
            clip_max_s=4.0,
            channel_names={"channel_ff": "Music Clips · демо"},
        )
        await proc.process(job, Steps())
    clip = out / f"{job.job_id}.mp4"
    pngs = {}
    for name, at in MOMENTS.items():
        pngs[name] = out / name
        subprocess.run(
            [
                *(str(FFMPEG), "-v", "error", "-ss", f"{at}", "-i", str(clip)),
                *("-frames:v", "1", "-vf", "scale=540:960:flags=area", str(out / name)),
            ],
            check=True,
            timeout=30,
        )
    if os.environ.get("CLIPJOBS_REGEN_DOCS") == "1":
        for name, path in pngs.items():
            (IMG / name).write_bytes(path.read_bytes())
    yield pngs


@pytest.fixture(params=["rendered now", "committed in docs/img"])
def shown(request: pytest.FixtureRequest, frames: dict[str, Path]) -> dict[str, Path]:
    if request.param == "rendered now":
        return frames
    return {name: IMG / name for name in MOMENTS}


def test_the_cover_moves_and_the_title_does_not(shown: dict[str, Path]) -> None:
    """Between the first and the last moment the cover has zoomed; the title is where it was."""
    first, last = frame(shown["clip-1.png"], 0), frame(shown["clip-3.png"], 0)
    moved = mean_diff(first, last, COVER, COVER_COLS)
    still = mean_diff(first, last, TITLE)
    assert moved > 1.0 and moved > 4 * still, (moved, still)


def test_a_caption_is_drawn_whenever_a_word_is_sung(shown: dict[str, Path]) -> None:
    """At each moment a word is being sung, and the caption band holds text (sharp edges)."""
    for name in MOMENTS:
        assert edges(frame(shown[name], 0), CAPTIONS) > 60, name


def test_sung_words_turn_gold_as_the_line_goes_on(shown: dict[str, Path]) -> None:
    """Karaoke: more of the verse's line is gold at 1.6 s than at 0.55 s."""
    early = gold(frame(shown["clip-1.png"], 0, "rgb24"), CAPTIONS)
    later = gold(frame(shown["clip-2.png"], 0, "rgb24"), CAPTIONS)
    assert early > 0 and later > 2 * early, (early, later)


def test_nothing_is_drawn_where_apps_put_their_buttons(shown: dict[str, Path]) -> None:
    """The top 10% and the bottom 20% of every frame are the blurred cover only."""
    for name in MOMENTS:
        picture = frame(shown[name], 0)
        assert edges(picture, rows(0, SAFE_TOP)) < 40, name
        assert edges(picture, rows(SAFE_BOTTOM, 1920)) < 40, name


def test_committed_frames_are_phone_sized() -> None:
    """The README's frames are 540×960 PNGs (half size: light to load, sharp on a phone)."""
    for name in MOMENTS:
        head = (IMG / name).read_bytes()[:24]
        assert head[:8] == b"\x89PNG\r\n\x1a\n"
        assert (int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")) == (
            540,
            960,
        )
    assert SMALL_W == 270
