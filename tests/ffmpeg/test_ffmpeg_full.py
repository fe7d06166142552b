"""The ``full`` clip: title, moving cover, waveform, karaoke captions from the fake Suno's lyrics.

Real ffmpeg, the fake Suno as a real HTTP server, tiny clips (2 s at 2 fps,
ultrafast). What is checked is measured: ffprobe for the streams, the ASS
file read back, and pixels of frames read back for captions and safe areas.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from _ffmpeg_harness import (
    ASYNC_WITH_FFMPEG,
    FPS,
    SONG,
    Steps,
    dialogues,
    edges,
    fake_suno,
    finished_song,
    frame,
    mean_diff,
    media_server,
    processor,
    rows,
    song_job,
    streams,
)

from clipjobs import (
    AlignedWord,
    ClipStep,
    GenerationParams,
    Observation,
    ProviderStatus,
    TimestampedLyrics,
    Track,
)
from clipjobs.testing import ScriptedSuno
from clipjobs_ffmpeg import CaptionsNote, FfmpegPostProcessor
from clipjobs_ffmpeg._captions import (
    CURRENT_BOTTOM,
    LINE_COLUMNS,
    SAFE_BOTTOM,
    SAFE_TOP,
    clean_text,
    columns,
    drawable,
)

pytestmark = ASYNC_WITH_FFMPEG

#: The band the sung line is drawn in (52 px text with its outline, bottom edge at 1440).
CAPTION_BAND = rows(CURRENT_BOTTOM - 80, CURRENT_BOTTOM + 8)
#: Frame rows apps cover with their buttons: nothing of ours may be drawn there.
TOP = rows(0, SAFE_TOP)
BOTTOM = rows(SAFE_BOTTOM, 1920)
#: Compression noise between two renders of the same picture stays under this.
NOISE = 3.0


def _sung(words: tuple[AlignedWord, ...], until_s: float) -> list[str]:
    """The words as the captions should show them: tags and newlines gone, in time order."""
    ordered = sorted(words, key=lambda w: max(0.0, w.start_s))
    shown = [clean_text(re.sub(r"\[[^\]]*\]", " ", w.word)) for w in ordered if w.start_s < until_s]
    return [drawable(w) for w in shown if drawable(w)]


def _word(text: str, start: float, end: float, **extra: Any) -> dict[str, Any]:
    return {"word": text, "success": True, "startS": start, "endS": end, "palign": 0, **extra}


def _full(
    session: aiohttp.ClientSession, media: Path, suno: Any, **options: Any
) -> FfmpegPostProcessor:
    return processor(session, media, suno=suno, style="full", **options)


async def test_lyrics_clip_has_the_streams_and_burned_in_captions(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A lyrics song: 1080×1920 H.264/AAC within the cap, captions drawn only in the safe area."""
    async with fake_suno() as (client, _):
        job = song_job(await finished_song(client))
        steps = Steps()
        made = await _full(session, tmp_path / "on", client).process(job, steps)
        bare = await _full(session, tmp_path / "off", client, captions=False).process(job, Steps())

    assert steps.seen == [ClipStep.DOWNLOADING, ClipStep.RENDERING]
    assert made.url == f"/media/{job.job_id}.mp4"
    assert made.captions_url == f"/media/{job.job_id}.srt"
    assert made.note is None
    assert sorted(p.name for p in (tmp_path / "on").iterdir()) == [
        f"{job.job_id}{suffix}" for suffix in (".ass", ".mp4", ".srt")
    ]
    assert (bare.captions_url, bare.note) == (None, None)
    clip = tmp_path / "on" / f"{job.job_id}.mp4"
    video, audio, duration = streams(clip)
    assert (video["codec_name"], video["width"], video["height"]) == ("h264", 1080, 1920)
    assert video["pix_fmt"] == "yuv420p"
    assert audio["codec_name"] == "aac"
    # The audio is cut at the cap; the picture may run one frame longer, not more.
    assert abs(float(audio["duration"]) - 2.0) <= 0.05
    assert duration <= 2.0 + 1 / FPS + 0.03

    # The same moment with and without captions: they differ in the caption band
    # (a word is being sung at 1 s), and nowhere in the top 10% or bottom 20%.
    for at in (0.5, 1.0, 1.5):
        with_captions = frame(clip, at)
        without = frame(tmp_path / "off" / f"{job.job_id}.mp4", at)
        assert mean_diff(with_captions, without, CAPTION_BAND) > 3 * NOISE, at
        assert mean_diff(with_captions, without, TOP) < NOISE, at
        assert mean_diff(with_captions, without, BOTTOM) < NOISE, at
        # Nothing sharp (text, edges of pictures) in the areas apps cover.
        assert edges(with_captions, TOP) < 40 and edges(with_captions, BOTTOM) < 40, at


async def test_ass_times_are_inside_the_audio_and_words_in_order(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """Every Dialogue of the kept .ass starts and ends within the clip's audio; words keep order."""
    async with fake_suno() as (client, _):
        seen = await finished_song(client)
        lyrics = await client.timestamped_lyrics(seen.task_id, seen.tracks[0].id)
        job = song_job(seen)
        await _full(session, tmp_path, client, clip_max_s=3.0).process(job, Steps())

    _, audio, _ = streams(tmp_path / f"{job.job_id}.mp4")
    length = float(audio["duration"])
    ass = (tmp_path / f"{job.job_id}.ass").read_text(encoding="utf-8")
    shown = dialogues(ass)
    assert shown
    for start, end, text in shown:
        assert 0 <= start < end <= length + 0.05, (start, end, length)
        assert columns(text) <= LINE_COLUMNS
    assert [s for s, _, _ in shown] == sorted(s for s, _, _ in shown)
    assert all(a_end <= b_start for (_, a_end, _), (b_start, _, _) in itertools.pairwise(shown))
    assert " ".join(text for _, _, text in shown).split() == _sung(lyrics.aligned_words, 3.0)
    # A section tag starts a new line: the chorus is not glued to the verse.
    assert shown[0][2].endswith("края")
    srt = (tmp_path / f"{job.job_id}.srt").read_text(encoding="utf-8")
    assert srt.startswith("1\n00:00:00,000 --> ") and "Тихий город" in srt


@pytest.mark.parametrize("style", ["full", "simple"])
async def test_instrumental_gets_no_captions_and_no_error(
    session: aiohttp.ClientSession, tmp_path: Path, style: str
) -> None:
    """An instrumental song makes a clip with no captions files; the note says why, not an error."""
    async with fake_suno() as (client, _):
        params = GenerationParams(prompt="calm piano", instrumental=True)
        job = song_job(await finished_song(client, params), params)
        made = await processor(session, tmp_path, suno=client, style=style).process(job, Steps())

    assert made.captions_url is None
    assert made.note is not None and made.note.startswith(CaptionsNote.CAPTIONS_NO_LYRICS)
    assert [p.suffix for p in tmp_path.iterdir()] == [".mp4"]


async def test_simple_style_keeps_captions_beside_the_still_clip(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """``simple`` renders today's still picture but still keeps the .srt/.ass for platforms."""
    async with fake_suno() as (client, _):
        job = song_job(await finished_song(client))
        made = await processor(session, tmp_path, suno=client, style="simple").process(job, Steps())
    assert made.captions_url == f"/media/{job.job_id}.srt"
    clip = tmp_path / f"{job.job_id}.mp4"
    # Still: two moments of the clip are the same picture.
    assert mean_diff(frame(clip, 0.5), frame(clip, 1.5), rows(0, 1920)) < NOISE


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ({"lyrics_error_code": 500}, "(code 500)"),
        ({"lyrics_error_code": 430}, "(code 430)"),
        ({"lyrics_error_code": 400}, "(code 400)"),
        # 20,001 words is a 1.6 MB answer: the client refuses to read past 1 MiB.
        ({"lyrics": [_word("la", i * 0.01, i * 0.01 + 0.005) for i in range(20_001)]}, "larger"),
    ],
)
async def test_a_failing_lyrics_call_still_gives_a_clip(
    session: aiohttp.ClientSession, tmp_path: Path, config: dict[str, Any], needle: str
) -> None:
    """Suno failing the lyrics call leaves the captions out, says why, and renders the clip."""
    async with fake_suno() as (client, fake):
        job = song_job(await finished_song(client))
        fake.configure(**config)
        made = await _full(session, tmp_path, client).process(job, Steps())

    assert made.url == f"/media/{job.job_id}.mp4" and made.captions_url is None
    assert made.note is not None
    assert made.note.startswith(CaptionsNote.CAPTIONS_LYRICS_FAILED) and needle in made.note
    video, _, _ = streams(tmp_path / f"{job.job_id}.mp4")
    assert (video["width"], video["height"]) == (1080, 1920)


async def test_captions_off_makes_no_lyrics_call(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """With captions off the processor never asks Suno for lyrics (nothing to fail)."""
    async with fake_suno() as (client, fake):
        job = song_job(await finished_song(client))
        fake.configure(lyrics_error_code=500)
        made = await _full(session, tmp_path, client, captions=False).process(job, Steps())
    assert (made.captions_url, made.note) == (None, None)


async def test_a_hanging_lyrics_call_times_out_into_a_note(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A lyrics call that does not answer within lyrics_timeout_s costs the captions only."""
    async with fake_suno() as (client, _):
        job = song_job(await finished_song(client))

        class Hanging:
            async def timestamped_lyrics(self, task_id: str, audio_id: str) -> Any:
                import asyncio

                await asyncio.sleep(3600)

        proc = _full(session, tmp_path, Hanging(), lyrics_timeout_s=0.2)
        made = await proc.process(job, Steps())
    assert made.captions_url is None and made.note is not None
    assert "did not come within 0.2 s" in made.note


_CONTROL = [
    _word("[Verse]\n{\\b1}bold", 0.1, 0.4),
    _word("back\\Nslash", 0.4, 0.7),
    _word("}{", 0.7, 0.9),
    _word("\\", 0.9, 1.1),
    _word("{\\fs200\\pos(0,0)}huge", 1.1, 1.5),
    _word("tab\there\x00\x1b[31m", 1.5, 1.8),
]
_DISORDER = [
    _word("third", 1.2, 1.6),
    _word("first", -0.5, 0.4),  # before the song starts
    _word("lost", 5.0, 1.0, success=False),  # unplaced: shown with the word before it
    _word("second", 0.3, 1.3),  # overlaps both neighbours
    _word("fourth", 1.6, 1.5),  # ends before it starts
    _word("later", 9.0, 9.5),  # after the clip
]
_SCRIPTS = [
    _word("שָׁלוֹם", 0.1, 0.4),
    _word("עולם", 0.4, 0.7),
    _word("مرحبا", 0.7, 1.0),
    _word("بالعالم", 1.0, 1.3),
    _word("🎵🔥", 1.3, 1.5),
    _word("ok👍🏽", 1.5, 1.8),
]
_MANY = [_word(f"слово{i}", i * 0.3, i * 0.3 + 0.25) for i in range(5000)]


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (_CONTROL, ["{\\b1}bold", "back\\Nslash", "}{", "\\", "{\\fs200\\pos(0,0)}huge"]),
        (_DISORDER, ["first", "second", "lost", "third", "fourth"]),
        (_SCRIPTS, ["שָׁלוֹם", "עולם", "مرحبا", "بالعالم", "ok"]),
        (_MANY, [f"слово{i}" for i in range(7)]),
    ],
    ids=["ass-control-characters", "disordered-times", "rtl-and-emoji", "5000-words"],
)
async def test_odd_lyrics_render_safely(
    session: aiohttp.ClientSession,
    tmp_path: Path,
    words: list[dict[str, Any]],
    expected: list[str],
) -> None:
    """Control characters, disordered times, RTL and emoji, 5,000 words: escaped, sorted, drawn."""
    async with fake_suno(lyrics=words) as (client, _):
        job = song_job(await finished_song(client))
        made = await _full(session, tmp_path, client).process(job, Steps())

    assert made.captions_url is not None, made.note
    shown = dialogues((tmp_path / f"{job.job_id}.ass").read_text(encoding="utf-8"))
    texts = " ".join(text for _, _, text in shown).split()
    if words is _CONTROL:
        # The tab and the escape character are gone; the rest is shown as written.
        assert texts == [*expected, "tab", "here[31m"]
    else:
        assert texts == expected
    starts = [s for s, _, _ in shown]
    assert starts == sorted(starts) and all(s >= 0 for s in starts)
    assert all(end <= 2.0 for _, end, _ in shown)
    assert all(a_end <= b_start for (_, a_end, _), (b_start, _, _) in itertools.pairwise(shown))
    srt = (tmp_path / f"{job.job_id}.srt").read_text(encoding="utf-8")
    if words is _SCRIPTS:
        assert "🎵🔥" in srt and "🎵" not in (tmp_path / f"{job.job_id}.ass").read_text()
    clip = tmp_path / f"{job.job_id}.mp4"
    picture = frame(clip, 1.0)
    assert edges(picture, CAPTION_BAND) > 60, "no caption drawn"
    assert edges(picture, TOP) < 40 and edges(picture, BOTTOM) < 40


async def test_more_words_than_a_song_has_is_refused(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """Over 20,000 aligned words the captions are refused (CAPTIONS_REFUSED); the clip is made."""
    many = tuple(AlignedWord("la", i * 0.01, i * 0.01 + 0.005) for i in range(20_001))
    async with fake_suno() as (client, _):
        seen = await finished_song(client)
    # A client without the HTTP client's 1 MiB cap on answers (an embedder's own).
    scripted = ScriptedSuno()
    scripted.statuses[seen.task_id] = ProviderStatus.SUCCESS
    scripted.lyrics[seen.tracks[0].id] = TimestampedLyrics(many)
    async with media_server() as server:
        local = Observation(
            seen.task_id,
            seen.status,
            (Track(seen.tracks[0].id, audio_url=server.url("/media/track-1.mp3")),),
        )
        job = song_job(local)
        made = await _full(session, tmp_path, scripted).process(job, Steps())
    assert made.captions_url is None and made.note is not None
    assert made.note.startswith(CaptionsNote.CAPTIONS_REFUSED)
    assert (tmp_path / f"{job.job_id}.mp4").is_file()


async def test_a_300_character_title_stays_in_two_lines_inside_the_frame(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A 300-character title is cut to two lines with an ellipsis, below the top 10%."""
    title = "Очень длинное название " * 13  # 299 characters
    async with fake_suno() as (client, _):
        job = song_job(await finished_song(client), SONG, title=title[:300])
        await _full(session, tmp_path, client).process(job, Steps())
        short = song_job(await finished_song(client), SONG, title="Т")
        await _full(session, tmp_path / "short", client).process(short, Steps())
    picture = frame(tmp_path / f"{job.job_id}.mp4", 0.5)
    reference = frame(tmp_path / "short" / f"{short.job_id}.mp4", 0.5)
    assert edges(picture, TOP) < 40
    # The long title's two lines are drawn between the top 10% and the cover.
    assert mean_diff(picture, reference, rows(SAFE_TOP, 430)) > NOISE
    assert mean_diff(picture, reference, rows(440, 1920)) < NOISE
