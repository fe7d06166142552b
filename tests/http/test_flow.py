"""The seed's flow over a real server: runOnce, GET at every stage, callbacks, the list."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from _http_harness import ALICE_TOKEN, BOB_TOKEN, Api, auth, running_api

from clipjobs import ProviderStatus
from clipjobs.app.ids import JOB_ID_PATTERN
from clipjobs_aiohttp import ApiConfig

pytestmark = pytest.mark.asyncio

TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
REQ = re.compile(r"^req_\d{13}_[a-z0-9]{6,}$")
SEED_GET_FIELDS = [
    "success",
    "ok",
    "jobId",
    "channelId",
    "stage",
    "progressText",
    "sunoTaskId",
    "audioUrl",
    "error",
    "createdAt",
    "updatedAt",
    "heartbeat",
    "requestId",
]


async def test_run_once_answers_202_with_the_seed_body(api: Api) -> None:
    """runOnce answers 202 with the seed's fields, requestId, Location and Retry-After: 3."""
    response = await api.run_once(json={"userId": "alice"}, headers={"x-user-id": "alice"})
    assert response.status == 202
    body = await response.json()
    assert list(body) == [
        "success",
        "ok",
        "jobId",
        "channelId",
        "stage",
        "createdAt",
        "message",
        "requestId",
    ]
    assert body["success"] is True and body["ok"] is True
    assert JOB_ID_PATTERN.match(body["jobId"])
    assert body["channelId"] == "channel_xyz"
    assert body["stage"] == "STAGE_10_REQUEST_ACCEPTED"
    assert TS.match(body["createdAt"])
    assert body["message"] == (
        "Генерация запущена, используйте GET /api/music-clips/jobs/:jobId для проверки статуса"
    )
    assert response.headers["Location"] == f"/api/music-clips/jobs/{body['jobId']}"
    assert response.headers["Retry-After"] == "3"
    assert REQ.match(body["requestId"])
    assert response.headers["X-Request-Id"] == body["requestId"]


async def test_whole_seed_flow_10_30_40_50(api: Api) -> None:
    """GET shows STAGE_10, then 30 after send, 40 after a text callback, 50 with audioUrl."""
    job_id = await api.start()
    body = await api.job(job_id)
    assert [k for k in body if k in SEED_GET_FIELDS] == SEED_GET_FIELDS
    assert body["stage"] == "STAGE_10_REQUEST_ACCEPTED"
    assert body["progressText"] == "Запрос принят, отправляем запрос в Suno..."
    assert body["sunoTaskId"] is None and body["audioUrl"] is None and body["error"] is None
    assert body["heartbeat"] == {"secondsSinceUpdate": 0, "isStale": False}
    assert body["done"] is False and body["version"] == 1 and body["tracks"] == []
    assert TS.match(body["createdAt"]) and TS.match(body["updatedAt"])

    await api.service.send(job_id)
    body = await api.job(job_id)
    assert body["stage"] == "STAGE_30_SUNO_TASK_CREATED"
    assert body["progressText"] == "Задача создана в Suno, ожидаем генерацию..."
    task_id = body["sunoTaskId"]
    assert task_id == await api.task_id(job_id)

    await api.clock.advance(30)
    response = await api.callback(job_id, ProviderStatus.TEXT_SUCCESS)
    assert response.status == 200
    ack = await response.json()
    assert ack["code"] == 200 and ack["msg"] == "success" and ack["result"] == "recorded"
    body = await api.job(job_id)
    assert body["stage"] == "STAGE_40_SUNO_PENDING"
    assert body["progressText"] == "Генерация музыки в процессе (PENDING/GENERATING)..."

    await api.clock.advance(5)
    response = await api.get(job_id)
    assert (await response.json())["heartbeat"] == {"secondsSinceUpdate": 5, "isStale": False}
    assert response.headers["Retry-After"] == "3"

    assert (await api.callback(job_id, ProviderStatus.SUCCESS)).status == 200
    response = await api.get(job_id)
    body = await response.json()
    assert body["stage"] == "STAGE_50_SUNO_SUCCESS"
    assert body["progressText"] == "Музыка сгенерирована успешно!"
    assert body["audioUrl"] == f"https://cdn.example/{task_id}-1.mp3"
    assert body["done"] is True
    assert body["tracks"][0] == {
        "id": f"{task_id}-1",
        "audioUrl": f"https://cdn.example/{task_id}-1.mp3",
        "streamAudioUrl": None,
        "imageUrl": None,
        "title": None,
        "duration": None,
        "storedAudioUrl": None,
        "storedImageUrl": None,
    }
    assert "Retry-After" not in response.headers


async def test_duplicate_and_out_of_order_callbacks_answer_200(api: Api) -> None:
    """A success, then its duplicate, then a late text callback: all 200, stage stays 50."""
    job_id = await api.start()
    await api.service.send(job_id)
    results = []
    for status in (ProviderStatus.SUCCESS, ProviderStatus.SUCCESS, ProviderStatus.TEXT_SUCCESS):
        response = await api.callback(job_id, status)
        assert response.status == 200
        results.append((await response.json())["result"])
    assert results[0] == "recorded"
    assert set(results[1:]) <= {"duplicate", "late"}
    assert (await api.job(job_id))["stage"] == "STAGE_50_SUNO_SUCCESS"


async def test_callback_for_an_unknown_task_is_an_orphan_answered_200(api: Api) -> None:
    """A callback with a valid token for a job that does not exist is kept as an orphan."""
    ghost = "job_1767225600000_ghost1"
    response = await api.client.post(
        "/api/webhooks/suno/music",
        params={"job": ghost, "token": api.signer.token(ghost)},
        json=api.suno.callback("no-such-task", ProviderStatus.SUCCESS),
    )
    assert response.status == 200
    assert (await response.json())["result"] == "orphan"
    (orphan,) = await api.store.list_orphans()
    assert orphan.task_id == "no-such-task"


async def test_english_texts_by_accept_language_and_lang_query(api: Api) -> None:
    """Accept-Language: en and ?lang=en give English progress and accepted texts."""
    response = await api.run_once(headers={"Accept-Language": "en-US,en;q=0.9"})
    body = await response.json()
    assert body["message"].startswith("Generation started")
    job_id = body["jobId"]
    response = await api.get(job_id, headers={"Accept-Language": "en"})
    assert (await response.json())["progressText"] == (
        "Request accepted, sending the request to Suno..."
    )
    response = await api.get(job_id, params={"lang": "en"})
    assert (await response.json())["progressText"].startswith("Request accepted")
    response = await api.get(job_id, headers={"Accept-Language": "fr, ru;q=0.5"})
    assert (await response.json())["progressText"].startswith("Запрос принят")


async def test_timed_out_job_shows_the_timeout_text_in_both_languages(api: Api) -> None:
    """A timed-out job's error is the SPEC's timeout text with N minutes, ru and en."""
    job_id = await api.start()
    await api.clock.advance(601)
    await api.service.sweep(job_id)
    body = await api.job(job_id)
    assert body["stage"] == "STAGE_99_TIMEOUT"
    assert body["progressText"] == "Превышено время ожидания"
    assert body["error"] == (
        "Превышено время ожидания генерации (10 минут). "
        "Проверьте статус в Suno или попробуйте снова."
        " Suno не сообщал о прогрессе 10 минут."
    )
    response = await api.get(job_id, params={"lang": "en"})
    assert (await response.json())["error"] == (
        "Generation timed out (10 minutes). Check the task in Suno or try again."
        " Suno reported no progress for 10 minutes."
    )


async def test_heartbeat_turns_stale_after_sixty_seconds(api: Api) -> None:
    """A job with no news for 75 s shows secondsSinceUpdate 75 and isStale true."""
    job_id = await api.start()
    await api.service.send(job_id)
    await api.clock.advance(75)
    assert (await api.job(job_id))["heartbeat"] == {"secondsSinceUpdate": 75, "isStale": True}


async def test_failed_suno_status_shows_stage_90_with_its_code(api: Api) -> None:
    """A GENERATE_AUDIO_FAILED callback gives STAGE_90_FAILED with errorCode and error text."""
    job_id = await api.start()
    await api.service.send(job_id)
    await api.callback(job_id, ProviderStatus.GENERATE_AUDIO_FAILED)
    body = await api.job(job_id)
    assert body["stage"] == "STAGE_90_FAILED"
    assert body["progressText"] == "Ошибка при генерации"
    assert body["errorCode"] == "GENERATE_AUDIO_FAILED"
    assert body["done"] is True


async def test_history_lists_the_log_for_the_owner_only(api: Api) -> None:
    """/history returns every event with version, type, at and data; others get 404."""
    job_id = await api.start()
    await api.service.send(job_id)
    await api.callback(job_id, ProviderStatus.SUCCESS)
    response = await api.client.get(f"/api/music-clips/jobs/{job_id}/history", headers=auth())
    body = await response.json()
    assert body["success"] is True and body["jobId"] == job_id and REQ.match(body["requestId"])
    types = [e["type"] for e in body["events"]]
    assert types[0] == "JobAccepted" and types[-1] == "SunoSucceeded"
    assert [e["version"] for e in body["events"]] == list(range(1, len(types) + 1))
    assert body["events"][0]["data"]["channel_id"] == "channel_xyz"
    assert all(TS.match(e["at"]) for e in body["events"])
    other = await api.client.get(f"/api/music-clips/jobs/{job_id}/history", headers=auth(BOB_TOKEN))
    assert other.status == 404
    assert (await other.json())["error"] == "JOB_NOT_FOUND"


async def test_job_list_shows_the_callers_jobs_newest_first(api: Api) -> None:
    """The channel's list holds the caller's jobs only, newest first, honouring ?limit=."""
    first = await api.start()
    await api.service.send(first)
    await api.callback(first, ProviderStatus.SUCCESS)
    await api.clock.advance(1)
    second = await api.start()
    await api.start(token=BOB_TOKEN)
    response = await api.client.get("/api/music-clips/channels/channel_xyz/jobs", headers=auth())
    body = await response.json()
    assert body["success"] is True and body["channelId"] == "channel_xyz"
    assert [j["jobId"] for j in body["jobs"]] == [second, first]
    assert body["jobs"][1]["stage"] == "STAGE_50_SUNO_SUCCESS"
    assert "progressText" in body["jobs"][0] and "heartbeat" in body["jobs"][0]
    response = await api.client.get(
        "/api/music-clips/channels/channel_xyz/jobs", params={"limit": "1"}, headers=auth()
    )
    assert [j["jobId"] for j in (await response.json())["jobs"]] == [second]
    response = await api.client.get(
        "/api/music-clips/channels/channel_xyz/jobs", params={"limit": "0"}, headers=auth()
    )
    assert response.status == 400
    assert (await response.json())["field"] == "limit"


async def test_mounted_under_a_prefix_routes_and_location_follow_it() -> None:
    """Mounted with add_subapp('/clips'), routes, Location and error bodies live under /clips."""
    async with running_api(prefix="/clips") as api:
        response = await api.run_once()
        assert response.status == 202
        job_id = (await response.json())["jobId"]
        assert response.headers["Location"] == f"/clips/api/music-clips/jobs/{job_id}"
        followed = await api.client.get(response.headers["Location"], headers=auth())
        assert (await followed.json())["stage"] == "STAGE_10_REQUEST_ACCEPTED"
        missing = await api.client.get("/clips/nothing-here")
        assert missing.status == 404
        assert (await missing.json())["error"] == "NOT_FOUND"
        assert (await api.client.get("/clips/healthz")).status == 200


async def test_ops_endpoints(api: Api) -> None:
    """healthz and readyz answer 200, metrics count jobs and requests, openapi is served."""
    await api.start()
    health = await api.client.get("/healthz")
    assert health.status == 200 and (await health.json())["status"] == "ok"
    ready = await api.client.get("/readyz")
    assert ready.status == 200 and REQ.match(ready.headers["X-Request-Id"])
    metrics = await api.client.get("/metrics")
    text = await metrics.text()
    assert metrics.headers["Content-Type"].startswith("text/plain")
    assert "clipjobs_active_jobs 1" in text
    assert "clipjobs_jobs_started_total 1" in text
    assert (
        'clipjobs_http_requests_total{route="/api/music-clips/channels/{channel_id}/runOnce",'
        'status="202"} 1'
    ) in text
    document = await (await api.client.get("/api/music-clips/openapi.json")).json()
    assert document["openapi"].startswith("3.1")


async def test_readyz_is_503_when_the_store_is_down(api: Api) -> None:
    """With the store closed, readyz is 503 STORE_UNAVAILABLE and GET job is 503 too."""
    job_id = await api.start()
    await api.store.aclose()
    ready = await api.client.get("/readyz")
    assert ready.status == 503
    assert (await ready.json())["error"] == "STORE_UNAVAILABLE"
    assert (await api.client.get("/healthz")).status == 200
    response = await api.get(job_id)
    assert response.status == 503
    assert (await response.json())["error"] == "STORE_UNAVAILABLE"
    assert (await api.client.get("/metrics")).status == 200


async def test_other_users_jobs_are_404_not_403(api: Api) -> None:
    """Bob asking for Alice's job gets the same 404 JOB_NOT_FOUND as for a job that is not there."""
    job_id = await api.start()
    theirs = await api.get(job_id, token=BOB_TOKEN)
    missing = await api.get("job_1767225600000_nothere", token=BOB_TOKEN)
    assert theirs.status == missing.status == 404
    assert (await theirs.json())["error"] == (await missing.json())["error"] == "JOB_NOT_FOUND"
    events = await api.client.get(f"/api/music-clips/jobs/{job_id}/events", headers=auth(BOB_TOKEN))
    assert events.status == 404
    assert ALICE_TOKEN not in await theirs.text()


async def test_request_id_reaches_the_log_lines_and_the_event(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    """The runOnce requestId is on its job-log and access-log records and in JobAccepted."""
    caplog.set_level(logging.INFO, logger="clipjobs")
    response = await api.run_once()
    rid = response.headers["X-Request-Id"]
    job_id = (await response.json())["jobId"]
    job_lines = [r for r in caplog.records if r.name == "clipjobs.job"]
    access = [r for r in caplog.records if r.name == "clipjobs.pipeline"]
    assert job_lines and all(getattr(r, "request_id", None) == rid for r in job_lines)
    assert job_id in job_lines[0].getMessage()
    assert any(
        getattr(r, "request_id", None) == rid and "runOnce" in r.getMessage() for r in access
    )
    (accepted, *_) = await api.store.read(job_id)
    assert accepted.event.request_id == rid  # type: ignore[union-attr]


async def test_openapi_path_in_the_config_is_served(tmp_path: Path) -> None:
    """ApiConfig.openapi_path serves that document instead of the packaged one."""
    document = tmp_path / "openapi.yaml"
    document.write_text("openapi: 3.1.0\ninfo: {title: mine, version: '1'}\npaths: {}\n")
    async with running_api(config=ApiConfig(openapi_path=document)) as api:
        served = await (await api.client.get("/api/music-clips/openapi.json")).json()
        assert served["info"]["title"] == "mine"
