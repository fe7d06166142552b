"""ETag, If-None-Match → 304, and the ``Prefer: wait=N`` long-poll."""

from __future__ import annotations

import asyncio

import pytest
from _http_harness import Api, running_api

from clipjobs import ProviderStatus
from clipjobs_aiohttp import ApiConfig

pytestmark = pytest.mark.asyncio


async def _until_waiting(api: Api, count: int = 1) -> None:
    """Yield until ``count`` requests wait on the store's change feed (bounded)."""
    for _ in range(500):
        if api.store._changes.waiting >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no request started waiting for a change")


async def test_etag_is_the_version_and_if_none_match_gives_304(api: Api) -> None:
    """ETag is the quoted version; If-None-Match naming it is 304 with ETag and Retry-After."""
    job_id = await api.start()
    response = await api.get(job_id)
    assert response.headers["ETag"] == '"1"'
    same = await api.get(job_id, headers={"If-None-Match": '"1"'})
    assert same.status == 304
    assert same.headers["ETag"] == '"1"'
    assert same.headers["Retry-After"] == "3"
    assert same.headers["X-Request-Id"].startswith("req_")
    weak = await api.get(job_id, headers={"If-None-Match": 'W/"0", W/"1"'})
    assert weak.status == 304
    await api.service.send(job_id)
    changed = await api.get(job_id, headers={"If-None-Match": '"1"'})
    assert changed.status == 200
    assert (await changed.json())["stage"] == "STAGE_30_SUNO_TASK_CREATED"
    assert changed.headers["ETag"] == f'"{await api.version(job_id)}"'


async def test_long_poll_wakes_on_change(api: Api) -> None:
    """Prefer: wait=30 with the current ETag holds the request until the job changes, then 200."""
    job_id = await api.start()
    pending = asyncio.ensure_future(
        api.get(job_id, headers={"If-None-Match": '"1"', "Prefer": "wait=30"})
    )
    await _until_waiting(api)
    assert not pending.done()
    await api.service.send(job_id)
    response = await pending
    assert response.status == 200
    body = await response.json()
    assert body["version"] > 1
    assert response.headers["ETag"] == f'"{body["version"]}"'


async def test_long_poll_times_out_to_304_capped_by_config() -> None:
    """Prefer: wait=60 is capped to long_poll_max_s and answers 304 when nothing changed."""
    async with running_api(config=ApiConfig(long_poll_max_s=0.1)) as api:
        job_id = await api.start()
        response = await api.get(job_id, headers={"If-None-Match": '"1"', "Prefer": "wait=60"})
        assert response.status == 304
        assert api.store._changes.waiting == 0


async def test_long_poll_on_a_done_job_answers_at_once(api: Api) -> None:
    """A done job never holds a long-poll: 304 right away, without Retry-After."""
    job_id = await api.start()
    await api.service.send(job_id)
    await api.callback(job_id, ProviderStatus.SUCCESS)
    version = await api.version(job_id)
    response = await api.get(job_id, headers={"If-None-Match": f'"{version}"', "Prefer": "wait=60"})
    assert response.status == 304
    assert "Retry-After" not in response.headers


async def test_long_poll_without_if_none_match_answers_at_once(api: Api) -> None:
    """Prefer: wait without If-None-Match is a plain GET (200 at once)."""
    job_id = await api.start()
    response = await api.get(job_id, headers={"Prefer": "wait=60"})
    assert response.status == 200
