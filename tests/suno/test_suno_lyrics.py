"""Timestamped lyrics: the fake's answers on the wire, the client's parsing, the budget."""

from __future__ import annotations

import array
import json
import math
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from _suno_wire import Wire, open_wire

from clipjobs import (
    AlignedWord,
    BudgetedSuno,
    FakeClock,
    Priority,
    ProviderStatus,
    SunoBudget,
    TimestampedLyrics,
)
from clipjobs.domain.errors import SunoProtocolError, SunoRejected, SunoTransient
from clipjobs.testing import ScriptedSuno
from clipjobs_suno import SunoApiClient, parse_timestamped_lyrics

MEDIA = Path(__file__).resolve().parents[2] / "adapters" / "clipjobs_suno" / "media"
PATH = "/api/v1/generate/get-timestamped-lyrics"
#: waveforms.json holds one peak per 50 ms, relative to the loudest one.
PER_S = 20


def waveform_of(mp3: Path) -> list[float]:
    """The MP3's peaks per 1/20 s, relative to the loudest: how waveforms.json was made."""
    rate = 22050
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(mp3), "-ac", "1", "-ar", str(rate), "-f", "s16le", "-"],
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    samples = array.array("h")
    samples.frombytes(raw)
    step = rate // PER_S
    peaks = [max(abs(v) for v in samples[i : i + step]) for i in range(0, len(samples), step)]
    top = max(peaks) or 1
    return [round(p / top, 3) for p in peaks]


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not on PATH")
def test_committed_waveforms_are_the_mp3s() -> None:
    """media/waveforms.json is what the MP3s decode to (CLIPJOBS_REGEN_MEDIA=1 rewrites it)."""
    computed = {f"track-{n}.mp3": waveform_of(MEDIA / f"track-{n}.mp3") for n in (1, 2)}
    path = MEDIA / "waveforms.json"
    if os.environ.get("CLIPJOBS_REGEN_MEDIA") == "1":
        lines = [f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in computed.items()]
        path.write_text("{\n" + ",\n".join(lines) + "\n}\n")
    committed = json.loads(path.read_text())
    assert committed.keys() == computed.keys()
    for name, values in computed.items():
        assert committed[name] == pytest.approx(values, abs=0.002), name


class LyricsWire(Wire):
    async def song(self, after_s: float = 3.0, **fields: Any) -> tuple[str, list[dict[str, Any]]]:
        """A task ``after_s`` after generate (3 s: SUCCESS), and its two tracks as record-info
        shows them.
        """
        task_id = await self.generate("http://127.0.0.1:9/cb", **fields)
        await self.clock.advance(after_s)
        info = await self.record_info(task_id)
        return task_id, list(info["response"]["sunoData"])

    async def lyrics(self, body: Any) -> tuple[int, Any]:
        return await self.call("POST", PATH, json=body)


@pytest_asyncio.fixture
async def wire() -> AsyncIterator[LyricsWire]:
    async with open_wire(LyricsWire, callback_retries=0) as wire:
        yield wire


@pytest.mark.asyncio
async def test_wire_shape_is_sunos(wire: LyricsWire) -> None:
    """The answer is the envelope with camelCase alignedWords, waveformData, hootCer, isStreamed."""
    task_id, tracks = await wire.song()
    status, answer = await wire.lyrics({"taskId": task_id, "audioId": tracks[0]["id"]})
    assert (status, answer["code"], answer["msg"]) == (200, 200, "success")
    data = answer["data"]
    assert set(data) == {"alignedWords", "waveformData", "hootCer", "isStreamed"}
    first = data["alignedWords"][0]
    assert set(first) == {"word", "success", "startS", "endS", "palign"}
    assert first["word"].startswith("[Verse]\n")
    assert any(w["word"].startswith("[Chorus]\n") for w in data["alignedWords"])
    committed = json.loads((MEDIA / "waveforms.json").read_text())
    assert data["waveformData"] == committed["track-1.mp3"]
    # One waveform value per 1/20 s of the song, as the MP3 decodes.
    assert len(data["waveformData"]) == pytest.approx(tracks[0]["duration"] * PER_S, abs=2)
    _, second = await wire.lyrics({"taskId": task_id, "audioId": tracks[1]["id"]})
    assert second["data"]["waveformData"] == committed["track-2.mp3"]
    assert second["data"]["alignedWords"][-1]["endS"] <= tracks[1]["duration"]


@pytest.mark.asyncio
async def test_instrumental_has_a_waveform_and_no_words(wire: LyricsWire) -> None:
    """An instrumental answers code 200 with no aligned words and the MP3's waveform."""
    task_id, tracks = await wire.song(instrumental=True)
    _, answer = await wire.lyrics({"taskId": task_id, "audioId": tracks[0]["id"]})
    assert answer["code"] == 200
    assert answer["data"]["alignedWords"] == []
    assert answer["data"]["waveformData"]


@pytest.mark.asyncio
async def test_not_before_the_audio_exists(wire: LyricsWire) -> None:
    """Before a track's audio is ready its lyrics are refused with 400; track 1 comes first."""
    task_id, (one, two) = await wire.song(after_s=2.0)  # FIRST_SUCCESS: only track 1 has audio
    assert (await wire.lyrics({"taskId": task_id, "audioId": one["id"]}))[1]["code"] == 200
    _, early = await wire.lyrics({"taskId": task_id, "audioId": two["id"]})
    assert early["code"] == 400 and "not generated yet" in early["msg"]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({}, "taskId"),
        ({"taskId": "0" * 32}, "audioId"),
        ({"taskId": "0" * 32, "audioId": "x"}, "does not exist"),
        ([], "JSON object"),
    ],
)
async def test_bad_requests_answer_400(wire: LyricsWire, body: Any, needle: str) -> None:
    """Missing ids, an unknown task or a body that is not an object answer code 400."""
    status, answer = await wire.lyrics(body)
    assert status == 200 and answer["code"] == 400 and needle in answer["msg"]


@pytest.mark.asyncio
async def test_scripted_words_and_errors_through_the_control_endpoint(wire: LyricsWire) -> None:
    """`lyrics` replaces the words as given; `lyrics_error_code` fails only this call."""
    task_id, tracks = await wire.song()
    odd = [{"word": "{\\b1}x", "success": True, "startS": -1, "endS": 0.5, "palign": 0}]
    await wire.call("POST", "/_fake/config", json={"lyrics": odd})
    _, answer = await wire.lyrics({"taskId": task_id, "audioId": tracks[0]["id"]})
    assert answer["data"]["alignedWords"] == odd
    await wire.call("POST", "/_fake/config", json={"lyrics": None, "lyrics_error_code": 500})
    _, failed = await wire.lyrics({"taskId": task_id, "audioId": tracks[0]["id"]})
    assert failed["code"] == 500
    _, info = await wire.call("GET", "/api/v1/generate/record-info", params={"taskId": task_id})
    assert info["code"] == 200
    status, refused = await wire.call("POST", "/_fake/config", json={"lyrics": "la la"})
    assert status == 400 and "lyrics" in refused["error"]


@pytest.mark.asyncio
async def test_client_maps_a_lyrics_failure_to_the_error_tree(wire: LyricsWire) -> None:
    """The client raises SunoTransient for a 500 and SunoRejected for an unknown track."""
    task_id, tracks = await wire.song()
    client = SunoApiClient(wire.session, "any-key", base_url=wire.url)
    with pytest.raises(SunoRejected):
        await client.timestamped_lyrics(task_id, "no-such-track")
    wire.fake.configure(lyrics_error_code=500)
    with pytest.raises(SunoTransient) as caught:
        await client.timestamped_lyrics(task_id, tracks[0]["id"])
    assert caught.value.code == 500


def test_parse_reads_the_documented_example() -> None:
    """suno-api-notes.md's example parses to one word and four waveform values."""
    data = {
        "alignedWords": [
            {"word": "[Verse]\nWaggin'", "success": True, "startS": 1.36, "endS": 1.79, "palign": 0}
        ],
        "waveformData": [0, 1, 0.5, 0.75],
        "hootCer": 0.38,
        "isStreamed": False,
    }
    assert parse_timestamped_lyrics(data) == TimestampedLyrics(
        (AlignedWord("[Verse]\nWaggin'", 1.36, 1.79, True, 0.0),), (0.0, 1.0, 0.5, 0.75)
    )


@pytest.mark.parametrize(
    "data",
    [None, {}, {"alignedWords": None, "waveformData": None}, {"alignedWords": []}],
)
def test_parse_treats_missing_lists_as_none(data: Any) -> None:
    """A null data, or null/absent lists, is an instrumental's answer: no words, no waveform."""
    assert parse_timestamped_lyrics(data) == TimestampedLyrics()


def test_parse_passes_odd_times_on_and_clamps_the_waveform() -> None:
    """Negative or overlapping times are kept for the caption maker; waveform values go to 0–1."""
    data = {
        "alignedWords": [
            {"word": "b", "startS": 2, "endS": 1},
            {"word": "a", "startS": -3, "endS": 0.5, "success": False},
        ],
        "waveformData": [-0.5, 2, 0.25],
    }
    lyrics = parse_timestamped_lyrics(data)
    assert [(w.word, w.start_s, w.end_s, w.success) for w in lyrics.aligned_words] == [
        ("b", 2.0, 1.0, True),
        ("a", -3.0, 0.5, False),
    ]
    assert lyrics.waveform == (0.0, 1.0, 0.25)


@pytest.mark.parametrize(
    "data",
    [
        [],
        {"alignedWords": {}},
        {"alignedWords": [1]},
        {"alignedWords": [{"word": 3, "startS": 0, "endS": 1}]},
        {"alignedWords": [{"word": "a", "startS": "0", "endS": 1}]},
        {"alignedWords": [{"word": "a", "startS": 0}]},
        {"alignedWords": [{"word": "a", "startS": math.nan, "endS": 1}]},
        {"alignedWords": [{"word": "a", "startS": 0, "endS": 1, "success": "yes"}]},
        {"waveformData": ["loud"]},
        {"waveformData": [True]},
    ],
)
def test_parse_refuses_other_shapes(data: Any) -> None:
    """Anything else raises SunoProtocolError, never KeyError or TypeError."""
    with pytest.raises(SunoProtocolError):
        parse_timestamped_lyrics(data)


@pytest.mark.asyncio
async def test_budgeted_lyrics_take_a_poll_turn() -> None:
    """BudgetedSuno's lyrics call waits in the shared budget with the polls' priority."""
    inner = ScriptedSuno()
    inner.statuses["t1"] = ProviderStatus.SUCCESS
    words = TimestampedLyrics((AlignedWord("la", 0.1, 0.4),))
    inner.lyrics["a1"] = words
    async with SunoBudget(2.0, clock=FakeClock()) as budget:
        suno = BudgetedSuno(inner, budget)
        assert await suno.timestamped_lyrics("t1", "a1") == words
        assert [r.priority for r in budget.history] == [Priority.POLL]
    assert inner.lyrics_asked == [("t1", "a1")]
