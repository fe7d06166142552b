"""Suno's payloads (suno-api-notes.md) parse into Observations; the rest is a protocol error."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clipjobs.domain.errors import SunoProtocolError
from clipjobs.domain.events import Observation, ProviderStatus, Track
from clipjobs_suno import parse_callback, parse_record_info

TASK = "5c79a0b1c2d3e4f5a6b7c8d9e0f1be8e"

RECORD_INFO: dict[str, Any] = {
    "taskId": TASK,
    "parentMusicId": "",
    "param": json.dumps({"prompt": "...", "model": "V4_5"}),
    "response": {
        "taskId": TASK,
        "sunoData": [
            {
                "id": "8551aa",
                "audioUrl": "https://cdn.example/1.mp3",
                "streamAudioUrl": "https://cdn.example/s1",
                "imageUrl": "https://cdn.example/1.jpeg",
                "prompt": "...",
                "modelName": "chirp-v3-5",
                "title": "Iron Man",
                "tags": "electrifying, rock",
                "createTime": 1758044664461,
                "duration": 198.44,
            }
        ],
    },
    "status": "SUCCESS",
    "type": "chirp-v4",
    "operationType": "generate",
    "errorCode": None,
    "errorMessage": None,
}

COMPLETE: dict[str, Any] = {
    "code": 200,
    "msg": "All generated successfully.",
    "data": {
        "callbackType": "complete",
        "task_id": TASK,
        "data": [
            {
                "id": "8551aa",
                "audio_url": "https://cdn.example/1.mp3",
                "source_audio_url": "https://cdn.example/1.mp3",
                "stream_audio_url": "https://cdn.example/s1",
                "image_url": "https://cdn.example/1.jpeg",
                "prompt": "...",
                "model_name": "chirp-v3-5",
                "title": "Iron Man",
                "tags": "electrifying, rock",
                "createTime": 1758044664461,
                "duration": 198.44,
            },
            {"id": "bd15bb", "audio_url": "https://cdn.example/2.mp3", "duration": 228.28},
        ],
    },
}

IRON_MAN = Track(
    "8551aa",
    audio_url="https://cdn.example/1.mp3",
    stream_audio_url="https://cdn.example/s1",
    image_url="https://cdn.example/1.jpeg",
    title="Iron Man",
    duration=198.44,
)


def test_record_info_success_reads_camel_case() -> None:
    """record-info's camelCase sunoData becomes the tracks of a SUCCESS observation."""
    assert parse_record_info(RECORD_INFO, TASK) == Observation(
        TASK, ProviderStatus.SUCCESS, (IRON_MAN,)
    )


def test_record_info_pending_has_null_response() -> None:
    """``response: null`` while pending is no tracks, not an error."""
    data = {**RECORD_INFO, "status": "PENDING", "response": None}
    assert parse_record_info(data, TASK) == Observation(TASK, ProviderStatus.PENDING)


def test_record_info_null_suno_data() -> None:
    """A response whose sunoData is null or missing is no tracks."""
    for response in ({"taskId": TASK, "sunoData": None}, {"taskId": TASK}):
        data = {**RECORD_INFO, "status": "TEXT_SUCCESS", "response": response}
        assert parse_record_info(data, TASK).tracks == ()


def test_record_info_failure_carries_code_and_message() -> None:
    """A failed task's errorCode and errorMessage travel on the observation."""
    data = {
        **RECORD_INFO,
        "status": "CREATE_TASK_FAILED",
        "response": None,
        "errorCode": 413,
        "errorMessage": "too long",
    }
    observation = parse_record_info(data, TASK)
    assert observation.status is ProviderStatus.CREATE_TASK_FAILED
    assert (observation.error_code, observation.error_message) == (413, "too long")


def test_record_info_track_still_generating() -> None:
    """At FIRST_SUCCESS a track with ``audioUrl: ""`` is kept with an empty URL."""
    data = copy.deepcopy(RECORD_INFO)
    data["status"] = "FIRST_SUCCESS"
    data["response"]["sunoData"].append({"id": "bd15bb", "audioUrl": "", "duration": None})
    tracks = parse_record_info(data, TASK).tracks
    assert [t.audio_url for t in tracks] == ["https://cdn.example/1.mp3", ""]
    assert tracks[1].duration is None


def test_record_info_prefers_camel_case_over_snake_case() -> None:
    """record-info is read by its camelCase names first (snake_case only as a fallback)."""
    data = copy.deepcopy(RECORD_INFO)
    data["response"]["sunoData"][0]["audio_url"] = "https://wrong.example/x.mp3"
    assert parse_record_info(data, TASK).tracks[0].audio_url == "https://cdn.example/1.mp3"


def test_record_info_about_another_task_is_refused() -> None:
    """An answer naming another task than the one asked about is a protocol error."""
    with pytest.raises(SunoProtocolError):
        parse_record_info(RECORD_INFO, "f" * 32)


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        {**RECORD_INFO, "status": "DONE"},
        {**RECORD_INFO, "status": None},
        {**RECORD_INFO, "response": []},
        {**RECORD_INFO, "response": {"sunoData": {}}},
        {**RECORD_INFO, "response": {"sunoData": [{"audioUrl": "x"}]}},
        {**RECORD_INFO, "response": {"sunoData": [{"id": "a", "audioUrl": 5}]}},
    ],
)
def test_record_info_outside_the_shape(data: Any) -> None:
    """Unknown statuses, wrong types and tracks without ids raise SunoProtocolError."""
    with pytest.raises(SunoProtocolError):
        parse_record_info(data, TASK)


def test_complete_callback_reads_snake_case() -> None:
    """The notes' complete callback gives both tracks from their snake_case fields."""
    observation = parse_callback(COMPLETE)
    assert observation.status is ProviderStatus.SUCCESS
    assert observation.tracks[0] == IRON_MAN
    assert observation.tracks[1] == Track(
        "bd15bb", audio_url="https://cdn.example/2.mp3", duration=228.28
    )


def test_callback_and_record_info_of_one_song_agree() -> None:
    """The same song, snake_case in a callback and camelCase in record-info, is one Track."""
    assert parse_callback(COMPLETE).tracks[0] == parse_record_info(RECORD_INFO, TASK).tracks[0]


def test_callback_prefers_snake_case_over_camel_case() -> None:
    """A callback is read by its snake_case names first, the documented trap."""
    body = copy.deepcopy(COMPLETE)
    body["data"]["data"][0]["audioUrl"] = "https://wrong.example/x.mp3"
    assert parse_callback(body).tracks[0].audio_url == "https://cdn.example/1.mp3"


def test_callback_camel_case_task_id_is_accepted() -> None:
    """``taskId`` (the sister API's spelling) is read when ``task_id`` is absent."""
    body = {"code": 200, "msg": "ok", "data": {"callbackType": "text", "taskId": TASK, "data": []}}
    assert parse_callback(body).task_id == TASK


@pytest.mark.parametrize("create_time", [1758044664461, "2025-01-01 00:00:00", None, "soon"])
def test_callback_create_time_forms(create_time: Any) -> None:
    """createTime as epoch ms, as the documented string, null or junk never breaks parsing."""
    body = copy.deepcopy(COMPLETE)
    body["data"]["data"][0]["createTime"] = create_time
    assert parse_callback(body).tracks[0] == IRON_MAN


@pytest.mark.parametrize(
    ("code", "msg", "status"),
    [
        (400, "Music generation failed", ProviderStatus.GENERATE_AUDIO_FAILED),
        (501, "Audio generation failed.", ProviderStatus.GENERATE_AUDIO_FAILED),
        (531, "Generation failed, credits refunded", ProviderStatus.GENERATE_AUDIO_FAILED),
        (400, "The prompt contains sensitive words", ProviderStatus.SENSITIVE_WORD_ERROR),
        (400, "Song description flagged for moderation", ProviderStatus.SENSITIVE_WORD_ERROR),
    ],
)
def test_error_callbacks(code: int, msg: str, status: ProviderStatus) -> None:
    """An error callback is GENERATE_AUDIO_FAILED, or SENSITIVE_WORD_ERROR if the msg says so."""
    body = {
        "code": code,
        "msg": msg,
        "data": {"callbackType": "error", "task_id": TASK, "data": None},
    }
    assert parse_callback(body) == Observation(TASK, status, error_code=code, error_message=msg)


def test_non_200_code_is_a_failure_whatever_the_type() -> None:
    """A callback with a non-200 code is a failure even if its callbackType says complete."""
    body = copy.deepcopy(COMPLETE)
    body["code"] = 451
    body["msg"] = "download failed"
    observation = parse_callback(body)
    assert observation.status is ProviderStatus.GENERATE_AUDIO_FAILED
    assert observation.error_code == 451


# --- anything at all --------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=25,
)

_track_keys = st.sampled_from(
    [
        "id",
        "audio_url",
        "audioUrl",
        "stream_audio_url",
        "image_url",
        "title",
        "duration",
        "createTime",
    ]
)
tracks = st.lists(st.dictionaries(_track_keys, json_values, max_size=8) | json_values, max_size=3)

callback_like = st.fixed_dictionaries(
    {},
    optional={
        "code": st.sampled_from([200, 400, 451, 500, 501, 531]) | json_values,
        "msg": st.text(max_size=30) | json_values,
        "data": st.fixed_dictionaries(
            {},
            optional={
                "callbackType": st.sampled_from(["text", "first", "complete", "error"])
                | json_values,
                "task_id": st.just(TASK) | json_values,
                "taskId": st.just(TASK) | json_values,
                "data": st.none() | tracks | json_values,
            },
        )
        | json_values,
    },
)

record_info_like = st.fixed_dictionaries(
    {},
    optional={
        "taskId": st.just(TASK) | json_values,
        "status": st.sampled_from([s.value for s in ProviderStatus]) | json_values,
        "response": st.none()
        | st.fixed_dictionaries({}, optional={"sunoData": st.none() | tracks | json_values})
        | json_values,
        "errorCode": json_values,
        "errorMessage": json_values,
    },
)


@given(callback_like | json_values)
def test_parse_callback_on_anything(payload: Any) -> None:
    """parse_callback on any JSON returns an Observation or raises SunoProtocolError, only."""
    try:
        observation = parse_callback(payload)
    except SunoProtocolError:
        return
    assert isinstance(observation, Observation)
    assert observation.task_id


@given(record_info_like | json_values, st.sampled_from([TASK, None]))
def test_parse_record_info_on_anything(data: Any, task_id: str | None) -> None:
    """parse_record_info on any JSON returns an Observation or raises SunoProtocolError."""
    try:
        observation = parse_record_info(data, task_id)
    except SunoProtocolError:
        return
    assert isinstance(observation, Observation)
    assert all(isinstance(t, Track) for t in observation.tracks)


@pytest.mark.parametrize(
    ("duration", "expected"),
    [(12.5, 12.5), (3, 3.0), ("12.5", 12.5), ("abc", None), (None, None), (True, None), (-1, None)],
)
def test_duration_forms(duration: Any, expected: float | None) -> None:
    """A duration is a number, a numeric string, or nothing; junk never breaks parsing."""
    body = copy.deepcopy(COMPLETE)
    body["data"]["data"][0]["duration"] = duration
    assert parse_callback(body).tracks[0].duration == expected


@pytest.mark.parametrize(("raw", "code"), [(501, 501), ("501", 501), ("x", None), (True, None)])
def test_record_info_error_code_forms(raw: Any, code: int | None) -> None:
    """errorCode is read as a number or a numeric string; anything else is no code."""
    data = {**RECORD_INFO, "status": "GENERATE_AUDIO_FAILED", "errorCode": raw}
    assert parse_record_info(data, TASK).error_code == code
