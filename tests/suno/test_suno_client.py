"""The client against real servers that misbehave: every failure becomes the right SunoError."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clipjobs.app.metrics import Metrics
from clipjobs.domain.errors import (
    ConfigError,
    InvalidRequest,
    SunoError,
    SunoNoCredits,
    SunoProtocolError,
    SunoRateLimited,
    SunoRejected,
    SunoTransient,
)
from clipjobs.domain.events import GenerationParams, Observation, ProviderStatus
from clipjobs_suno import SunoApiClient, SunoTimeouts

pytestmark = pytest.mark.asyncio

PARAMS = GenerationParams(prompt="a song")
CALLBACK = "http://127.0.0.1:9/cb?job=j&token=t"
TASK = "09c0edbd9dc50df9b6174a7b240bbcba"
FAST = SunoTimeouts(generate=0.3, record_info=0.3, credits=0.3, connect=0.3)


def envelope(code: int, data: Any = None, msg: str = "m") -> str:
    return json.dumps({"code": code, "msg": msg, "data": data})


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def client_for(session: aiohttp.ClientSession, url: str, **kw: Any) -> SunoApiClient:
    return SunoApiClient(session, "sk-test-key", base_url=url, timeouts=FAST, **kw)


async def call(client: SunoApiClient, endpoint: str) -> object:
    if endpoint == "generate":
        return await client.generate(PARAMS, CALLBACK)
    if endpoint == "record_info":
        return await client.record_info(TASK)
    return await client.credits()


async def test_requests_are_what_suno_documents(session: Any, scripted: Any) -> None:
    """generate POSTs the camelCase body with a bearer key; record-info passes taskId."""
    client = client_for(session, scripted.url)
    scripted.answer(200, envelope(200, {"taskId": TASK}))
    assert await client.generate(PARAMS, CALLBACK) == TASK
    method, path, headers, body = scripted.requests[-1]
    assert (method, path) == ("POST", "/api/v1/generate")
    assert headers["Authorization"] == "Bearer sk-test-key"
    assert json.loads(body) == {
        "customMode": False,
        "instrumental": False,
        "model": "V4_5",
        "callBackUrl": CALLBACK,
        "prompt": "a song",
    }
    scripted.answer(200, envelope(200, {"taskId": TASK, "status": "PENDING", "response": None}))
    assert await client.record_info(TASK) == Observation(TASK, ProviderStatus.PENDING)
    assert scripted.requests[-1][:2] == ("GET", f"/api/v1/generate/record-info?taskId={TASK}")
    scripted.answer(200, envelope(200, 42))
    assert await client.credits() == 42
    assert scripted.requests[-1][:2] == ("GET", "/api/v1/generate/credit")


@pytest.mark.parametrize(
    ("status", "body", "error", "code"),
    [
        (200, envelope(429), SunoNoCredits, 429),
        (200, envelope(430), SunoRateLimited, 430),
        (200, envelope(405), SunoRateLimited, 405),
        (200, envelope(455), SunoTransient, 455),
        (200, envelope(500), SunoTransient, 500),
        (200, envelope(400, msg="Please enter callBackUrl."), SunoRejected, 400),
        (200, envelope(401), SunoRejected, 401),
        (200, envelope(413), SunoRejected, 413),
        (200, envelope(404), SunoRejected, 404),
        (200, envelope(7), SunoProtocolError, 7),
        (429, "", SunoNoCredits, 429),
        (503, "<html>busy</html>", SunoTransient, 503),
        (500, envelope(455), SunoTransient, 455),
        (401, envelope(401, msg="bad key"), SunoRejected, 401),
        (302, "", SunoProtocolError, 302),
    ],
)
async def test_code_mapping(
    session: Any, scripted: Any, status: int, body: str, error: type[SunoError], code: int
) -> None:
    """HTTP status and body code both count; each maps to its documented error."""
    scripted.answer(status, body, Location="http://elsewhere.example/")
    with pytest.raises(error) as caught:
        await client_for(session, scripted.url).generate(PARAMS, CALLBACK)
    assert caught.value.code == code
    assert type(caught.value) is error


async def test_rejection_carries_suno_message(session: Any, scripted: Any) -> None:
    """SunoRejected says what Suno said."""
    scripted.answer(200, envelope(400, msg="Please enter callBackUrl."))
    with pytest.raises(SunoRejected, match="Please enter callBackUrl"):
        await client_for(session, scripted.url).generate(PARAMS, CALLBACK)


@pytest.mark.parametrize(("status", "maybe_sent"), [(502, True), (504, True), (503, False)])
async def test_gateway_errors_on_generate(
    session: Any, scripted: Any, status: int, maybe_sent: bool
) -> None:
    """A 502/504 from a proxy may hide a request Suno got: maybe_sent; a 503 did not reach it."""
    scripted.answer(status, "gateway")
    with pytest.raises(SunoTransient) as caught:
        await client_for(session, scripted.url).generate(PARAMS, CALLBACK)
    assert caught.value.maybe_sent is maybe_sent


@pytest.mark.parametrize(
    "body",
    [
        "",
        "not json",
        "[]",
        '"text"',
        json.dumps({"msg": "no code", "data": {"taskId": TASK}}),
        json.dumps({"code": "200", "data": {"taskId": TASK}}),
        json.dumps({"code": 200, "msg": "success"}),
        envelope(200, None),
        envelope(200, {"taskId": ""}),
        envelope(200, {"taskId": ["x"]}),
        envelope(200, {"task_id": TASK}),
        "[" * 100_000,
        b"\xff\xfe\x00garbage".decode("latin-1"),
    ],
)
async def test_malformed_generate_answers_are_protocol_errors(
    session: Any, scripted: Any, body: str
) -> None:
    """Malformed JSON or missing fields in a 200 answer raise SunoProtocolError, never KeyError."""
    scripted.answer(200, body)
    with pytest.raises(SunoProtocolError):
        await client_for(session, scripted.url).generate(PARAMS, CALLBACK)


@pytest.mark.parametrize("data", ["100", None, True, -1, [1], float("nan")])
async def test_credits_must_be_a_number(session: Any, scripted: Any, data: Any) -> None:
    """credit data that is not a non-negative number is a protocol error."""
    scripted.answer(200, json.dumps({"code": 200, "msg": "success", "data": data}))
    with pytest.raises(SunoProtocolError):
        await client_for(session, scripted.url).credits()


async def test_oversized_answer_is_refused(session: Any, scripted: Any) -> None:
    """An answer over the size cap is not read into memory: SunoProtocolError."""
    scripted.answer(200, envelope(200, "x" * 5000))
    client = SunoApiClient(session, "k", base_url=scripted.url, max_body_bytes=1000)
    with pytest.raises(SunoProtocolError, match="larger"):
        await client.credits()


async def test_connection_refused_was_not_sent(session: Any) -> None:
    """A refused connection is transient and certainly not sent (maybe_sent False)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(SunoTransient) as caught:
        await client_for(session, f"http://127.0.0.1:{port}").generate(PARAMS, CALLBACK)
    assert caught.value.maybe_sent is False


async def test_timeout_after_sending_may_have_been_sent(session: Any, scripted: Any) -> None:
    """No answer within the generate timeout: transient, and maybe sent."""

    async def slow(_: web.Request) -> web.StreamResponse:
        await asyncio.sleep(5)
        return web.Response(text=envelope(200, {"taskId": TASK}))

    scripted.handler = slow
    with pytest.raises(SunoTransient) as caught:
        await client_for(session, scripted.url).generate(PARAMS, CALLBACK)
    assert caught.value.maybe_sent is True
    assert not isinstance(caught.value, SunoRateLimited)


@pytest_asyncio.fixture
async def raw_server() -> AsyncIterator[tuple[str, list[bytes]]]:
    """A TCP server that reads a request, then answers the bytes set in its list (or hangs up)."""
    replies: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        if replies:
            writer.write(replies[0])
            await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", replies
    finally:
        server.close()
        await server.wait_closed()


async def test_connection_dropped_after_request_may_have_been_sent(
    session: Any, raw_server: Any
) -> None:
    """The server hangs up after reading the request: transient, and maybe sent."""
    url, _ = raw_server
    with pytest.raises(SunoTransient) as caught:
        await client_for(session, url).generate(PARAMS, CALLBACK)
    assert caught.value.maybe_sent is True


async def test_garbage_http_is_transient_maybe_sent(session: Any, raw_server: Any) -> None:
    """A reply that is not HTTP at all is a transient error that may hide a created task."""
    url, replies = raw_server
    replies.append(b"SUNO IS NOT HTTP\r\n\r\n")
    with pytest.raises(SunoTransient) as caught:
        await client_for(session, url).generate(PARAMS, CALLBACK)
    assert caught.value.maybe_sent is True


async def test_invalid_base_url_is_rejected(session: Any) -> None:
    """A base URL that is not a URL fails as SunoRejected, not an aiohttp error."""
    with pytest.raises(SunoRejected, match="invalid URL"):
        await SunoApiClient(session, "k", base_url="http://[::1").credits()


async def test_empty_key_is_a_config_error(session: Any) -> None:
    """An empty API key stops construction with ConfigError."""
    with pytest.raises(ConfigError):
        SunoApiClient(session, "  ")


async def test_invalid_params_are_not_sent(session: Any, scripted: Any) -> None:
    """generate refuses params Suno would refuse (SunoRejected, 413) without a request."""
    with pytest.raises(SunoRejected) as caught:
        await client_for(session, scripted.url).generate(
            GenerationParams(prompt="x" * 501), CALLBACK
        )
    assert caught.value.code == 413
    assert scripted.requests == []


async def test_validate_names_the_field(session: Any) -> None:
    """validate raises InvalidRequest naming the camelCase field."""
    client = SunoApiClient(session, "k")
    with pytest.raises(InvalidRequest) as caught:
        client.validate(GenerationParams(prompt="x", model="V1"))
    assert caught.value.field == "model"


async def test_metrics_count_calls_by_endpoint_and_code(session: Any, scripted: Any) -> None:
    """clipjobs_suno_calls_total counts each call with its body code, HTTP status or 'error'."""
    metrics = Metrics()
    client = client_for(session, scripted.url, metrics=metrics)
    scripted.answer(200, envelope(200, {"taskId": TASK}))
    await client.generate(PARAMS, CALLBACK)
    scripted.answer(200, envelope(430))
    with pytest.raises(SunoRateLimited):
        await client.credits()
    scripted.answer(502, "bad gateway")
    with pytest.raises(SunoTransient):
        await client.record_info(TASK)
    dead = client_for(session, "http://127.0.0.1:9", metrics=metrics)
    with pytest.raises(SunoTransient):
        await dead.credits()
    name = "clipjobs_suno_calls_total"
    assert metrics.value(name, endpoint="generate", code="200") == 1
    assert metrics.value(name, endpoint="credits", code="430") == 1
    assert metrics.value(name, endpoint="record_info", code="502") == 1
    assert metrics.value(name, endpoint="credits", code="error") == 1


# --- a hostile server -------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
statuses = st.sampled_from(
    [200, 201, 204, 301, 400, 401, 404, 405, 413, 429, 430, 455, 500, 502, 503, 504]
) | st.integers(200, 599)
codes = st.sampled_from([200, 400, 401, 404, 405, 413, 429, 430, 455, 500]) | json_values
track = st.dictionaries(
    st.sampled_from(["id", "audioUrl", "streamAudioUrl", "imageUrl", "title", "duration"]),
    json_values,
)
data_values = (
    json_values
    | st.fixed_dictionaries({}, optional={"taskId": st.just(TASK) | json_values})
    | st.fixed_dictionaries(
        {},
        optional={
            "taskId": st.just(TASK) | json_values,
            "status": st.sampled_from([s.value for s in ProviderStatus]) | json_values,
            "response": st.none()
            | st.fixed_dictionaries({}, optional={"sunoData": st.lists(track | json_values)}),
            "errorCode": json_values,
            "errorMessage": json_values,
        },
    )
)
envelopes = st.fixed_dictionaries(
    {}, optional={"code": codes, "msg": st.text(max_size=20) | json_values, "data": data_values}
)
bodies = (envelopes | json_values).map(lambda v: json.dumps(v).encode()) | st.binary(max_size=64)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    status=statuses, body=bodies, endpoint=st.sampled_from(["generate", "record_info", "credits"])
)
async def test_hostile_server_yields_result_or_suno_error(
    session: Any, scripted: Any, status: int, body: bytes, endpoint: str
) -> None:
    """Whatever status and body a server sends, the client returns a result or raises SunoError."""
    scripted.answer(status, body)
    client = client_for(session, scripted.url)
    try:
        result = await call(client, endpoint)
    except SunoError:
        return
    expected = {"generate": str, "record_info": Observation, "credits": int}[endpoint]
    assert isinstance(result, expected)
