"""The fake Suno keeps Suno's quirks on the wire: shapes, codes, callbacks, media, control."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from _suno_wire import Wire, generate_body, open_wire

from clipjobs.domain.errors import InvalidRequest
from clipjobs.domain.events import GenerationParams
from clipjobs_suno import SunoApiClient
from clipjobs_suno.fake import SCENARIOS, FakeSuno, running_fake_suno, serve_fake

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def wire() -> AsyncIterator[Wire]:
    async with open_wire(Wire, callback_retry_delay_s=1.0) as wire:
        yield wire


async def test_task_ids_are_32_hex(wire: Wire, receiver: Any) -> None:
    """generate answers Suno's envelope with a 32-hex-character taskId."""
    status, answer = await wire.call(
        "POST", "/api/v1/generate", json=generate_body(receiver.url, model="V5")
    )
    assert status == 200
    assert set(answer) == {"code", "msg", "data"}
    assert (answer["code"], answer["msg"]) == (200, "success")
    assert re.fullmatch(r"[0-9a-f]{32}", answer["data"]["taskId"])


async def test_record_info_is_camel_case_with_null_response_while_pending(
    wire: Wire, receiver: Any
) -> None:
    """record-info is camelCase, ``response`` null while PENDING, track 2 empty at FIRST_SUCCESS."""
    task_id = await wire.generate(receiver.url)
    pending = await wire.record_info(task_id)
    assert pending["status"] == "PENDING" and pending["response"] is None
    assert {"taskId", "param", "status", "errorCode", "errorMessage", "operationType"} <= set(
        pending
    )
    assert "callBackUrl" not in pending["param"]
    await wire.clock.advance(2.0)
    first = await wire.record_info(task_id)
    assert first["status"] == "FIRST_SUCCESS"
    one, two = first["response"]["sunoData"]
    assert one["audioUrl"].endswith("/1.mp3") and two["audioUrl"] == ""
    assert "audio_url" not in one
    await wire.clock.advance(1.0)
    done = await wire.record_info(task_id)
    assert done["status"] == "SUCCESS"
    assert all(t["audioUrl"].startswith(wire.url) for t in done["response"]["sunoData"])
    assert isinstance(done["response"]["sunoData"][0]["createTime"], int)


async def test_callbacks_are_snake_case_as_documented(wire: Wire, receiver: Any) -> None:
    """Callbacks carry task_id/callbackType and snake_case track fields; text has data []."""
    task_id = await wire.generate(receiver.url)
    await wire.clock.advance(3.0)
    await wire.fake.settle()
    text, first, complete = receiver.for_task(task_id)
    assert text == {
        "code": 200,
        "msg": "Text generation completed.",
        "data": {"callbackType": "text", "task_id": task_id, "data": []},
    }
    assert first["data"]["callbackType"] == "first"
    assert [t["audio_url"] == "" for t in first["data"]["data"]] == [False, True]
    track = complete["data"]["data"][0]
    assert {"id", "audio_url", "stream_audio_url", "image_url", "createTime", "duration"} <= set(
        track
    )
    assert not {"audioUrl", "streamAudioUrl", "imageUrl", "taskId"} & set(track)


async def test_error_callback_has_null_data(wire: Wire, receiver: Any) -> None:
    """A failed task's callback is callbackType error with ``data: null`` and a non-200 code."""
    await wire.call("POST", "/_fake/config", json={"scenario": "generate-failed"})
    task_id = await wire.generate(receiver.url)
    await wire.clock.advance(3.0)
    await wire.fake.settle()
    error = receiver.for_task(task_id)[-1]
    assert error["code"] != 200
    assert error["data"] == {"callbackType": "error", "task_id": task_id, "data": None}


async def test_missing_callback_url_is_sunos_exact_answer(wire: Wire) -> None:
    """No callBackUrl gets Suno's exact answer: code 400 "Please enter callBackUrl." at HTTP 200."""
    body = {"customMode": False, "instrumental": False, "model": "V4", "prompt": "x"}
    status, answer = await wire.call("POST", "/api/v1/generate", json=body)
    assert (status, answer) == (
        200,
        {"code": 400, "msg": "Please enter callBackUrl.", "data": None},
    )


async def test_too_long_is_413_and_bad_json_is_400(wire: Wire, receiver: Any) -> None:
    """Over-limit fields answer 413; a body that is not JSON answers 400."""
    body = {
        "customMode": True,
        "instrumental": False,
        "model": "V4",
        "callBackUrl": receiver.url,
        "prompt": "la",
        "style": "s" * 201,
        "title": "t",
    }
    _, answer = await wire.call("POST", "/api/v1/generate", json=body)
    assert answer["code"] == 413
    _, answer = await wire.call("POST", "/api/v1/generate", data=b"{nope")
    assert answer["code"] == 400


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer "}, {"Authorization": "Basic x"}]
)
async def test_missing_key_is_401(wire: Wire, headers: dict[str, str]) -> None:
    """Without a bearer key every API call answers code 401."""
    _, answer = await wire.call("GET", "/api/v1/generate/credit", headers=headers)
    assert answer["code"] == 401


async def test_configured_key_is_enforced() -> None:
    """A fake built with an api_key accepts that key only."""
    async with running_fake_suno(api_key="right") as (url, _), aiohttp.ClientSession() as s:
        for key, code in (("wrong", 401), ("right", 200)):
            async with s.get(
                f"{url}/api/v1/generate/credit", headers={"Authorization": f"Bearer {key}"}
            ) as r:
                assert (await r.json())["code"] == code


async def test_bad_path_or_method_is_404_not_405(wire: Wire) -> None:
    """A wrong path or method answers 404 as Suno does, never 405 (which means rate limited)."""
    for method, path in (("GET", "/api/v1/generate"), ("POST", "/api/v1/nothing")):
        status, answer = await wire.call(method, path)
        assert (status, answer["code"]) == (404, 404)


async def test_rate_limit_is_per_key(wire: Wire) -> None:
    """20 calls per 10 s per key: the 21st answers 430 while another key is still served."""
    codes = []
    for _ in range(21):
        _, answer = await wire.call("GET", "/api/v1/generate/credit")
        codes.append(answer["code"])
    assert codes == [200] * 20 + [430]
    _, other = await wire.call(
        "GET", "/api/v1/generate/credit", headers={"Authorization": "Bearer other"}
    )
    assert other["code"] == 200
    await wire.clock.advance(10.0)
    _, again = await wire.call("GET", "/api/v1/generate/credit")
    assert again["code"] == 200


async def test_arrivals_are_a_public_record_of_every_call(wire: Wire) -> None:
    """``FakeSuno.arrivals`` (and ``GET /_fake/arrivals``) list every API call in order, with
    whether the rate limit let it in: what benches and tests read instead of the fake's
    private limiter."""
    for _ in range(21):
        await wire.call("GET", "/api/v1/generate/credit")
    assert [a.admitted for a in wire.fake.arrivals] == [True] * 20 + [False]
    assert {a.path for a in wire.fake.arrivals} == {"/api/v1/generate/credit"}
    status, record = await wire.call("GET", "/_fake/arrivals")
    assert status == 200
    assert (len(record["admitted"]), len(record["refused"])) == (20, 1)
    assert record["admitted"][0] == wire.clock.now().timestamp()
    assert (record["rate_limit"], record["rate_window_s"]) == (20, 10.0)


async def test_seeded_tasks_answer_record_info(wire: Wire) -> None:
    """``POST /_fake/tasks`` makes tasks known without generate calls (a seeded store's jobs
    can be polled); a malformed list is 400 and adds nothing."""
    tasks = [{"taskId": f"{i:032x}", "callBackUrl": "http://127.0.0.1:9/cb"} for i in range(3)]
    bad = {"tasks": [tasks[0], {"taskId": "x"}]}
    status, _ = await wire.call("POST", "/_fake/tasks", json=bad)
    assert status == 400 and wire.fake.tasks() == []
    status, answer = await wire.call(
        "POST", "/_fake/tasks", json={"tasks": tasks, "timings": {"text_after_s": 30}}
    )
    assert (status, answer) == (200, {"tasks": 3})
    info = await wire.record_info(tasks[1]["taskId"])
    assert info["taskId"] == tasks[1]["taskId"] and info["status"] == "PENDING"
    assert wire.fake.arrivals[-1].path == "/api/v1/generate/record-info"


async def test_generate_cost_and_partial_balance(wire: Wire, receiver: Any) -> None:
    """Each generate spends generate_cost; a balance below it answers 429."""
    await wire.call("POST", "/_fake/config", json={"credits": 15, "generate_cost": 10})
    await wire.generate(receiver.url)
    _, answer = await wire.call("GET", "/api/v1/generate/credit")
    assert answer["data"] == 5
    body = generate_body(receiver.url, model="V4", prompt="x")
    _, answer = await wire.call("POST", "/api/v1/generate", json=body)
    assert answer["code"] == 429


async def test_callback_retried_three_times_then_given_up(wire: Wire, receiver: Any) -> None:
    """A receiver answering 500 gets the callback 1 + 3 times, then Suno gives up on it."""
    await wire.call("POST", "/_fake/config", json={"scenario": "success"})
    receiver.answers.extend([500] * 10)
    task_id = await wire.generate(receiver.url)
    await wire.clock.advance(1.0)
    for _ in range(3):
        await wire.fake.settle()
        await wire.clock.advance(1.0)
    await wire.fake.settle()
    text_attempts = [d for d in wire.fake.deliveries(task_id) if d.stage == "text"]
    assert [d.attempt for d in text_attempts] == [1, 2, 3, 4]
    assert all(d.status == 500 for d in text_attempts)


async def test_retry_succeeds_after_a_failure(wire: Wire, receiver: Any) -> None:
    """One failed delivery is retried, and the listing shows both answers."""
    receiver.answers.append(503)
    task_id = await wire.generate(receiver.url)
    await wire.clock.advance(1.0)
    await wire.fake.settle()
    await wire.clock.advance(1.0)
    await wire.fake.settle()
    _, listing = await wire.call("GET", "/_fake/tasks")
    (task,) = [t for t in listing["tasks"] if t["taskId"] == task_id]
    text = [d for d in task["deliveries"] if d["callbackType"] == "text"]
    assert [(d["attempt"], d["status"]) for d in text] == [(1, 503), (2, 200)]


async def test_slow_receiver_times_out(receiver: Any) -> None:
    """A receiver that does not answer within callback_timeout_s counts as a failed delivery."""
    receiver.hang = True
    async with (
        running_fake_suno(
            text_after_s=0,
            first_after_s=0,
            complete_after_s=0,
            callback_timeout_s=0.05,
            callback_retries=0,
        ) as (url, fake),
        aiohttp.ClientSession() as session,
    ):
        client = SunoApiClient(session, "k", base_url=url)
        task_id = await client.generate(GenerationParams(prompt="a song"), receiver.url)
        await fake.settle()
        (first, *_) = fake.deliveries(task_id)
        assert first.status is None and first.error and "no answer" in first.error


async def test_media_are_real_files(wire: Wire, receiver: Any, tmp_path: Path) -> None:
    """Audio URLs serve MP3 (decodable when ffprobe exists) and image URLs serve JPEG."""
    task_id = await wire.generate(receiver.url)
    await wire.clock.advance(3.0)
    tracks = (await wire.record_info(task_id))["response"]["sunoData"]
    for track in tracks:
        async with wire.session.get(track["audioUrl"]) as r:
            assert (r.status, r.content_type) == (200, "audio/mpeg")
            audio = await r.read()
        async with wire.session.get(track["streamAudioUrl"]) as r:
            assert r.status == 200 and await r.read() == audio
        async with wire.session.get(track["imageUrl"]) as r:
            assert (r.status, r.content_type) == (200, "image/jpeg")
            assert (await r.read())[:3] == b"\xff\xd8\xff"
        assert audio[:3] == b"ID3" or audio[0] == 0xFF
        if shutil.which("ffprobe"):
            path = tmp_path / "track.mp3"
            path.write_bytes(audio)
            probe = await asyncio.to_thread(
                subprocess.run,
                [
                    *("ffprobe", "-v", "error", "-of", "json"),
                    *("-show_entries", "format=duration:stream=codec_name", str(path)),
                ],
                capture_output=True,
                check=True,
            )
            found = json.loads(probe.stdout)
            assert found["streams"][0]["codec_name"] == "mp3"
            assert float(found["format"]["duration"]) == pytest.approx(track["duration"], abs=0.1)
    async with wire.session.get(f"{wire.url}/files/not-a-task/1.mp3") as r:
        assert r.status == 404


async def test_control_endpoint_validates(wire: Wire) -> None:
    """POST /_fake/config refuses unknown settings and scenarios; GET shows the config."""
    for bad in (
        {"scenario": "chaos"},
        {"colour": "red"},
        {"credits": -1},
        {"text_after_s": 5},
        [],
    ):
        async with wire.session.post(f"{wire.url}/_fake/config", json=bad) as r:
            assert r.status == 400
            assert (await r.json())["error"]
    async with wire.session.get(f"{wire.url}/_fake/config") as r:
        shown = await r.json()
    assert shown["config"]["scenario"] == "success"
    assert list(shown["scenarios"]) == list(SCENARIOS)


async def test_scenario_applies_to_tasks_created_after_it(wire: Wire, receiver: Any) -> None:
    """A task keeps the scenario it was created under when the scenario changes later."""
    first = await wire.generate(receiver.url)
    await wire.call("POST", "/_fake/config", json={"scenario": "stuck"})
    second = await wire.generate(receiver.url)
    await wire.clock.advance(5.0)
    assert (await wire.record_info(first))["status"] == "SUCCESS"
    assert (await wire.record_info(second))["status"] == "PENDING"


async def test_shutdown_cancels_pending_callbacks(receiver: Any) -> None:
    """Leaving the server with callbacks still scheduled cancels them: no task outlives it."""
    before = asyncio.all_tasks()
    async with (
        running_fake_suno(text_after_s=60, first_after_s=60, complete_after_s=60) as (url, _),
        aiohttp.ClientSession() as session,
    ):
        client = SunoApiClient(session, "k", base_url=url)
        await client.generate(GenerationParams(prompt="a song"), receiver.url)
        assert len(asyncio.all_tasks() - before) >= 1
    await asyncio.sleep(0)
    assert {t for t in asyncio.all_tasks() - before if not t.done()} == set()


async def test_serve_fake_runs_until_cancelled() -> None:
    """serve_fake (the CLI's entry) listens, answers, and stops cleanly when cancelled."""
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    server = asyncio.create_task(
        serve_fake("127.0.0.1", 0, "success", 3, on_ready=ready.set_result)
    )
    url = await asyncio.wait_for(ready, 5)
    async with aiohttp.ClientSession() as session:
        assert await SunoApiClient(session, "k", base_url=url).credits() == 3
    server.cancel()
    with pytest.raises(asyncio.CancelledError):
        await server


async def test_serve_fake_refuses_bad_settings() -> None:
    """An unknown scenario stops serve_fake before it listens."""
    with pytest.raises(ValueError, match="scenario"):
        await serve_fake("127.0.0.1", 0, "chaos", 3)


# --- Suno's rules for generate, written out (suno-api-notes.md) ----------------------
#
# The client and the fake both call ``_limits.check_generate_body``, so comparing them
# with each other would prove nothing; each is checked against these cases instead.

P, S, T = "p", "s", "t"
#: (fields over a valid non-custom V4_5 body, the code Suno answers, the field it names)
GENERATE_CASES: list[tuple[dict[str, Any], int, str | None]] = [
    ({}, 200, None),
    ({"prompt": ""}, 400, "prompt"),
    ({"prompt": "   "}, 400, "prompt"),
    ({"prompt": P * 500}, 200, None),  # non-custom mode: at most 500, whatever the model
    ({"prompt": P * 501}, 413, "prompt"),
    ({"prompt": P * 501, "model": "V5"}, 413, "prompt"),
    ({"model": "V2"}, 400, "model"),
    ({"model": "v4"}, 400, "model"),
    ({"model": ""}, 400, "model"),
    *[({"model": m}, 200, None) for m in ("V3_5", "V4", "V4_5", "V4_5PLUS", "V4_5ALL", "V5")],
    ({"model": "V5_5"}, 200, None),
    # Custom mode: style and title required, the prompt (lyrics) too unless instrumental.
    ({"customMode": True, "style": "pop", "title": "Song"}, 200, None),
    ({"customMode": True, "title": "Song"}, 400, "style"),
    ({"customMode": True, "style": "pop"}, 400, "title"),
    ({"customMode": True, "style": "pop", "title": ""}, 400, "title"),
    ({"customMode": True, "style": "pop", "title": "Song", "prompt": ""}, 400, "prompt"),
    (
        {"customMode": True, "instrumental": True, "style": "pop", "title": "Song", "prompt": ""},
        200,
        None,
    ),
    # Custom-mode limits per model: prompt / style / title.
    *[
        case
        for model, (prompt, style, title) in {
            "V4": (3000, 200, 80),
            "V3_5": (3000, 200, 80),
            "V4_5ALL": (5000, 1000, 80),
            "V4_5": (5000, 1000, 100),
            "V5": (5000, 1000, 100),
        }.items()
        for case in (
            ({"customMode": True, "model": model, "prompt": P * prompt, "style": S * style,
              "title": T * title}, 200, None),
            ({"customMode": True, "model": model, "prompt": P * (prompt + 1), "style": "pop",
              "title": "Song"}, 413, "prompt"),
            ({"customMode": True, "model": model, "style": S * (style + 1), "title": "Song"},
             413, "style"),
            ({"customMode": True, "model": model, "style": "pop", "title": T * (title + 1)},
             413, "title"),
        )
    ],
]  # fmt: skip


def _case_id(case: tuple[dict[str, Any], int, str | None]) -> str:
    fields, code, field = case
    shown = {k: (f"{v[0]}*{len(v)}" if isinstance(v, str) and len(v) > 8 else v)
             for k, v in fields.items()}  # fmt: skip
    return f"{code}-{field}-{shown}"


@pytest.mark.parametrize(
    ("fields", "code", "field"), GENERATE_CASES, ids=[_case_id(c) for c in GENERATE_CASES]
)
async def test_the_fake_answers_generate_as_suno_does(
    wire: Wire, receiver: Any, fields: dict[str, Any], code: int, field: str | None
) -> None:
    """The fake answers each written-out generate body with Suno's code, naming the field."""
    body = generate_body(receiver.url, **fields)
    if fields.get("customMode") and "prompt" not in fields:
        body["prompt"] = "la la la"
    _, answer = await wire.call("POST", "/api/v1/generate", json=body)
    assert answer["code"] == code, answer
    if field is not None:
        assert field in answer["msg"], answer


@pytest.mark.parametrize(
    ("fields", "code", "field"), GENERATE_CASES, ids=[_case_id(c) for c in GENERATE_CASES]
)
async def test_the_client_refuses_what_suno_refuses(
    fields: dict[str, Any], code: int, field: str | None
) -> None:
    """client.validate passes what Suno accepts and refuses the rest naming the field, before
    spending a request.
    """
    params = GenerationParams(
        prompt=fields.get("prompt", "la la la" if fields.get("customMode") else "a song"),
        style=fields.get("style"),
        title=fields.get("title"),
        custom_mode=fields.get("customMode", False),
        instrumental=fields.get("instrumental", False),
        model=fields.get("model", "V4_5"),
    )
    async with aiohttp.ClientSession() as session:
        client = SunoApiClient(session, "k")
        if field is None:
            client.validate(params)
        else:
            with pytest.raises(InvalidRequest) as refused:
                client.validate(params)
            assert refused.value.field == field


async def test_a_missing_callback_url_is_refused_as_suno_refuses_it(wire: Wire) -> None:
    """No callBackUrl: code 400 with Suno's own message."""
    body = {"customMode": False, "instrumental": False, "model": "V4_5", "prompt": "a song"}
    _, answer = await wire.call("POST", "/api/v1/generate", json=body)
    assert answer == {"code": 400, "msg": "Please enter callBackUrl.", "data": None}


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"vocalGender": "x"}, "vocalGender"),
        ({"styleWeight": 2}, "styleWeight"),
        ({"audioWeight": True}, "audioWeight"),
        ({"negativeTags": 5}, "negativeTags"),
        ({"callBackUrl": "ftp://example/cb"}, "callBackUrl"),
        ({"prompt": 12}, "prompt"),
        ({"customMode": "yes"}, "customMode"),
    ],
)
async def test_optional_and_typed_fields_are_checked(
    wire: Wire, receiver: Any, extra: dict[str, Any], field: str
) -> None:
    """Optional fields out of range and wrongly typed fields answer 400 naming the field."""
    body = generate_body(receiver.url, **extra)
    _, answer = await wire.call("POST", "/api/v1/generate", json=body)
    assert answer["code"] == 400
    assert field in answer["msg"]


async def test_optional_fields_in_range_are_accepted(wire: Wire, receiver: Any) -> None:
    """vocalGender m/f and weights from 0 to 1 are accepted."""
    task_id = await wire.generate(
        receiver.url, vocalGender="f", styleWeight=0.5, weirdnessConstraint=0, negativeTags="x"
    )
    assert len(task_id) == 32


async def test_malformed_requests_answer_400(wire: Wire) -> None:
    """A non-object body, and record-info without taskId, answer code 400."""
    _, answer = await wire.call("POST", "/api/v1/generate", json=[1, 2])
    assert answer["code"] == 400
    _, answer = await wire.call("GET", "/api/v1/generate/record-info")
    assert (answer["code"], answer["msg"]) == (400, "Please enter taskId.")
    async with wire.session.get(f"{wire.url}/files/nope/1.jpeg") as r:
        assert r.status == 404


async def test_python_api_configure_and_reuse() -> None:
    """FakeSuno.configure validates like the endpoint; running_fake_suno reuses a given fake."""
    fake = FakeSuno(credits=1)
    with pytest.raises(ValueError, match="unknown"):
        fake.configure(colour="red")
    async with running_fake_suno(fake=fake, credits=9) as (url, same):
        assert same is fake and fake.config.credits == 9
        assert "success" in repr(fake)
        async with aiohttp.ClientSession() as session:
            assert await SunoApiClient(session, "k", base_url=url).credits() == 9


async def test_every_model_the_core_names_has_its_limits() -> None:
    """The core names Suno's models once (``SUNO_MODELS``, which SUNO_MODEL is checked
    against); the adapter keeps each one's length limits, for exactly those models."""
    from clipjobs.domain.events import SUNO_MODELS
    from clipjobs_suno._limits import _LIMITS, MODELS

    assert MODELS == frozenset(SUNO_MODELS) == frozenset(_LIMITS)
