"""Every error answer: status, code, the error body, and requestId."""

from __future__ import annotations

import io

import pytest
from _http_harness import BOB_TOKEN, CALLBACK_BASE, Api, auth, running_api

from clipjobs import ServiceConfig
from clipjobs.testing import ScriptedSuno
from clipjobs_aiohttp import ApiConfig

pytestmark = pytest.mark.asyncio


async def _error(response, status: int, code: str) -> dict:  # type: ignore[no-untyped-def]
    assert response.status == status, await response.text()
    body = await response.json()
    assert body["success"] is False and body["ok"] is False
    assert body["error"] == code
    assert isinstance(body["message"], str) and body["message"]
    assert body["requestId"] == response.headers["X-Request-Id"]
    assert "Traceback" not in await response.text()
    return body


async def test_401_without_or_with_a_bad_token(api: Api) -> None:
    """No Authorization, another scheme or an unknown token are 401 UNAUTHORIZED."""
    path = "/api/music-clips/channels/c1/runOnce"
    for headers in ({}, {"Authorization": "Basic YWxpY2U6eA=="}, auth("not-a-known-token")):
        response = await api.client.post(path, headers=headers)
        await _error(response, 401, "UNAUTHORIZED")
        assert response.headers["WWW-Authenticate"] == "Bearer"
    await _error(await api.get("job_1767225600000_abcdef", token="nope"), 401, "UNAUTHORIZED")
    assert await api.store.list_jobs("alice", "c1") == []


async def test_403_when_x_user_id_or_body_user_differs(api: Api) -> None:
    """x-user-id or a body userId other than the token's user is 403 FORBIDDEN, no job made."""
    await _error(await api.run_once(headers={"x-user-id": "bob"}), 403, "FORBIDDEN")
    await _error(await api.run_once(json={"userId": "bob"}), 403, "FORBIDDEN")
    job_id = await api.start()
    await _error(await api.get(job_id, headers={"x-user-id": "bob"}), 403, "FORBIDDEN")
    assert len(await api.store.list_jobs("alice", "channel_xyz")) == 1


async def test_400_invalid_request_names_the_field(api: Api) -> None:
    """Wrong types name the field; bad JSON and non-objects name the body; bad channel ids too."""
    cases = [
        ({"prompt": 5}, "prompt"),
        ({"instrumental": "yes"}, "instrumental"),
        ({"customMode": 1}, "customMode"),
        ({"userId": 7}, "userId"),
        ({"negativeTags": ["a"]}, "negativeTags"),
        ({"prompt": "x" * 6000}, "prompt"),
    ]
    for body, field in cases:
        error = await _error(await api.run_once(json=body), 400, "INVALID_REQUEST")
        assert error["field"] == field
    lone_surrogate = await api.run_once(
        data=b'{"prompt": "\\ud800"}', headers={"Content-Type": "application/json"}
    )
    assert (await _error(lone_surrogate, 400, "INVALID_REQUEST"))["field"] == "prompt"
    for raw in (b"{not json", b"[1, 2]", b'"text"', b"\xff\xfe"):
        response = await api.run_once(data=raw, headers={"Content-Type": "application/json"})
        assert (await _error(response, 400, "INVALID_REQUEST"))["field"] == "body"
    response = await api.run_once(channel="bad channel!")
    assert (await _error(response, 400, "INVALID_REQUEST"))["field"] == "channelId"
    assert await api.store.count_active() == 0


async def test_unknown_fields_are_ignored_and_overrides_reach_the_job(api: Api) -> None:
    """Known params reach the job's params; unknown body fields change nothing."""
    response = await api.run_once(
        json={"prompt": "sea", "instrumental": False, "model": "V5", "surprise": {"x": 1}}
    )
    assert response.status == 202
    state = await api.store.load((await response.json())["jobId"])
    assert state is not None
    assert (state.params.prompt, state.params.instrumental, state.params.model) == (
        "sea",
        False,
        "V5",
    )


async def test_400_callback_url_not_configured_carries_the_failed_job() -> None:
    """Without PUBLIC_BASE_URL runOnce is 400 CALLBACK_URL_NOT_CONFIGURED with the job's id."""
    async with running_api(service_config=ServiceConfig(callback_base_url=None)) as api:
        body = await _error(await api.run_once(), 400, "CALLBACK_URL_NOT_CONFIGURED")
        assert body["message"] == (
            "Callback URL not configured. Set PUBLIC_BASE_URL environment variable."
        )
        job = await api.job(body["jobId"])
        assert job["stage"] == "STAGE_90_FAILED"
        assert job["errorCode"] == "CALLBACK_URL_NOT_CONFIGURED"


async def test_402_no_credits_carries_credits_zero_and_the_job() -> None:
    """With 0 Suno credits runOnce is 402 SUNO_NO_CREDITS, credits 0 and the failed job's id."""
    async with running_api(suno=ScriptedSuno(credits=0)) as api:
        body = await _error(await api.run_once(), 402, "SUNO_NO_CREDITS")
        assert body["credits"] == 0
        assert body["message"] == "Недостаточно кредитов Suno для генерации. Пополните баланс."
        assert (await api.job(body["jobId"]))["stage"] == "STAGE_90_FAILED"


async def test_409_job_already_running_names_the_running_job(api: Api) -> None:
    """A second runOnce on a busy channel is 409 with the running job's id; Bob is not blocked."""
    job_id = await api.start()
    body = await _error(await api.run_once(), 409, "JOB_ALREADY_RUNNING")
    assert body["jobId"] == job_id
    assert (await api.run_once(token=BOB_TOKEN)).status == 202
    assert (await api.run_once(channel="another")).status == 202


async def test_idempotency_key_same_body_same_job_other_body_422(api: Api) -> None:
    """The same Idempotency-Key and body give the same job; another body is 422."""
    headers = {"Idempotency-Key": "click-1"}
    first = await api.run_once(json={"prompt": "a"}, headers=headers)
    again = await api.run_once(json={"prompt": "a"}, headers=headers)
    assert first.status == again.status == 202
    assert (await first.json())["jobId"] == (await again.json())["jobId"]
    reused = await _error(
        await api.run_once(json={"prompt": "b"}, headers=headers), 422, "IDEMPOTENCY_KEY_REUSED"
    )
    assert reused["jobId"] == (await first.json())["jobId"]
    bad = await _error(
        await api.run_once(headers={"Idempotency-Key": "with space"}), 400, "INVALID_REQUEST"
    )
    assert bad["field"] == "Idempotency-Key"


async def test_413_for_a_3_mib_body_with_the_error_body(api: Api) -> None:
    """A 3 MiB runOnce body is 413 PAYLOAD_TOO_LARGE with the error body; no job is made."""
    big = b'{"prompt": "' + b"x" * (3 * 1024 * 1024) + b'"}'
    response = await api.run_once(
        data=io.BytesIO(big), headers={"Content-Type": "application/json"}
    )
    await _error(response, 413, "PAYLOAD_TOO_LARGE")
    response = await api.client.post(
        "/api/webhooks/suno/music", params={"job": "j", "token": "t"}, data=io.BytesIO(big)
    )
    await _error(response, 413, "PAYLOAD_TOO_LARGE")
    assert await api.store.count_active() == 0


async def test_413_when_streamed_without_content_length(api: Api) -> None:
    """A chunked body that grows past max_body_bytes is cut off with 413."""

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(40):
            yield b"x" * 65536

    response = await api.run_once(data=chunks(), headers={"Content-Type": "application/json"})
    await _error(response, 413, "PAYLOAD_TOO_LARGE")


async def test_max_body_bytes_is_configurable() -> None:
    """ApiConfig.max_body_bytes sets the limit."""
    async with running_api(config=ApiConfig(max_body_bytes=64)) as api:
        await _error(await api.run_once(json={"prompt": "x" * 100}), 413, "PAYLOAD_TOO_LARGE")
        assert (await api.run_once(json={"prompt": "short"})).status == 202


async def test_404_and_405_of_unknown_routes_have_the_error_body(api: Api) -> None:
    """Unknown paths are 404 NOT_FOUND and wrong methods 405 METHOD_NOT_ALLOWED, as JSON."""
    await _error(await api.client.get("/no/such/route"), 404, "NOT_FOUND")
    response = await api.client.delete("/api/music-clips/channels/c1/runOnce")
    await _error(response, 405, "METHOD_NOT_ALLOWED")
    assert "POST" in response.headers["Allow"]
    await _error(await api.get("not-a-job-id"), 404, "JOB_NOT_FOUND")


async def test_404_job_not_found_has_the_seed_body(api: Api) -> None:
    """An unknown job is 404 with the seed's message 'Job <id> not found'."""
    body = await _error(await api.get("job_1703616000000_abc123"), 404, "JOB_NOT_FOUND")
    assert body["message"] == "Job job_1703616000000_abc123 not found"


async def test_500_hides_the_traceback(api: Api) -> None:
    """An unexpected exception is 500 INTERNAL_ERROR with no traceback or exception text."""

    class Exploding:
        async def params_for(self, *args: object) -> object:
            raise RuntimeError("secret internals")

    api.service.params = Exploding()  # type: ignore[assignment]
    response = await api.run_once()
    body = await _error(response, 500, "INTERNAL_ERROR")
    assert "secret internals" not in await response.text()
    assert body["message"] == "Internal server error."


async def test_webhook_bad_json_is_400_with_a_token_and_401_without(api: Api) -> None:
    """Unreadable callback bodies are 400 for a valid token, 401 for a forged one."""
    job_id = await api.start()
    good = {"job": job_id, "token": api.signer.token(job_id)}
    response = await api.client.post("/api/webhooks/suno/music", params=good, data=b"{oops")
    await _error(response, 400, "INVALID_REQUEST")
    response = await api.client.post(
        "/api/webhooks/suno/music", params={"job": job_id, "token": "x"}, data=b"{oops"
    )
    await _error(response, 401, "UNAUTHORIZED")
    assert await api.version(job_id) == 1


async def test_callback_base_url_is_the_configured_one(api: Api) -> None:
    """The callback URL sent to Suno is PUBLIC_BASE_URL + the webhook path with job and token."""
    job_id = await api.start()
    await api.service.send(job_id)
    ((_, url, _),) = api.suno.generated
    assert url == f"{CALLBACK_BASE}/api/webhooks/suno/music?job={job_id}&token=" + (
        api.signer.token(job_id)
    )
