"""Forged Suno callbacks are 401 and record nothing."""

from __future__ import annotations

import pytest
from _http_harness import Api

from clipjobs import ProviderStatus

pytestmark = pytest.mark.asyncio


async def _sent_job(api: Api, channel: str) -> str:
    job_id = await api.start(channel)
    await api.service.send(job_id)
    return job_id


async def test_wrong_missing_and_foreign_tokens_are_401_and_change_nothing(api: Api) -> None:
    """Wrong, missing, empty or another job's token: 401, the job's version unchanged."""
    job_id = await _sent_job(api, "c1")
    other = await _sent_job(api, "c2")
    before = await api.version(job_id)
    task_id = await api.task_id(job_id)
    forged = [
        {"job": job_id, "token": "0" * 32},
        {"job": job_id},
        {"job": job_id, "token": ""},
        {"job": job_id, "token": "ключ"},
        {"token": api.signer.token(job_id)},
        {},
        # A valid token for another job, naming this job's task in the payload.
        {"job": other, "token": api.signer.token(other)},
    ]
    for params in forged:
        response = await api.client.post(
            "/api/webhooks/suno/music",
            params=params,
            json=api.suno.callback(task_id, ProviderStatus.SUCCESS),
        )
        assert response.status == 401, params
        body = await response.json()
        assert body["error"] == "UNAUTHORIZED" and body["ok"] is False
    assert await api.version(job_id) == before
    assert (await api.job(job_id))["stage"] == "STAGE_30_SUNO_TASK_CREATED"
    assert await api.store.list_orphans() == []
    assert api.service.metrics.value("clipjobs_callbacks_total", result="forged") == len(forged)
