"""Parsed callbacks and record-info answers are bounded, whatever the body's size."""

from __future__ import annotations

from typing import Any

from clipjobs_suno import parse_callback, parse_record_info
from clipjobs_suno._parse import CUT_MARK, MAX_TEXT, MAX_TRACKS, MAX_URL


def _tracks(n: int, url: str, title: str, snake: bool) -> list[dict[str, Any]]:
    key = "audio_url" if snake else "audioUrl"
    return [{"id": f"t{i}", key: url, "title": title} for i in range(n)]


def test_a_callback_keeps_two_tracks_short_urls_and_cut_texts() -> None:
    """1,000 tracks become 2; a URL over 2 KiB is dropped, one at 2 KiB kept; long texts cut."""
    long_url, ok_url = "https://x/" + "a" * MAX_URL, "https://x/" + "a" * (MAX_URL - 10)
    tracks = _tracks(1000, long_url, "t" * 5000, True)
    tracks[1]["audio_url"] = ok_url
    observation = parse_callback(
        {
            "code": 501,
            "msg": "m" * 100_000,
            "data": {"callbackType": "error", "task_id": "task-1", "data": tracks},
        }
    )
    assert len(observation.tracks) == MAX_TRACKS
    assert [t.audio_url for t in observation.tracks] == ["", ok_url]
    assert observation.tracks[0].title == "t" * MAX_TEXT + CUT_MARK
    assert observation.error_message == "m" * MAX_TEXT + CUT_MARK


def test_record_info_is_bounded_the_same_way() -> None:
    """record-info's sunoData and errorMessage follow the same caps."""
    observation = parse_record_info(
        {
            "taskId": "task-1",
            "status": "GENERATE_AUDIO_FAILED",
            "errorMessage": "e" * 100_000,
            "response": {"sunoData": _tracks(50, "https://x/" + "b" * 5000, "ok", False)},
        }
    )
    assert len(observation.tracks) == MAX_TRACKS
    assert all(t.audio_url == "" and t.title == "ok" for t in observation.tracks)
    assert observation.error_message is not None and observation.error_message.endswith(CUT_MARK)
