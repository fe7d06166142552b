"""Secrets never reach logs or responses: bearer tokens, webhook tokens and secret, Suno's key."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from _http_harness import ALICE_TOKEN, BOB_TOKEN, WEBHOOK_SECRET, Api, auth, running_api

from clipjobs import ChannelDefaults, GenerationParams, ParamOverrides, ProviderStatus
from clipjobs.testing import ScriptedSuno
from clipjobs_aiohttp import RedactedAccessLogger

pytestmark = pytest.mark.asyncio

SUNO_KEY = "sk-suno-FAKE-KEY-0123456789abcdef"
UNKNOWN_TOKEN = "a-token-nobody-owns-987"


class KeyedSuno(ScriptedSuno):
    """The scripted Suno holding an API key, as a real client would."""

    def __init__(self) -> None:
        super().__init__()
        self.api_key = SUNO_KEY

    def __repr__(self) -> str:
        return "KeyedSuno(<key>)"


class LeakyParams(ChannelDefaults):
    """Fails on one channel with an error that quotes the Suno key, as careless code might."""

    async def params_for(
        self, channel_id: str, user_id: str, overrides: ParamOverrides
    ) -> GenerationParams:
        if channel_id == "leaky":
            raise RuntimeError(f"upstream said 401 for Authorization: Bearer {SUNO_KEY}")
        return await super().params_for(channel_id, user_id, overrides)


async def _collect(api: Api, bodies: list[str]) -> None:
    job_id = await api.start()
    bodies.append((await (await api.get(job_id)).read()).decode())
    await api.service.send(job_id)
    token = api.signer.token(job_id)
    for status in (ProviderStatus.TEXT_SUCCESS, ProviderStatus.SUCCESS, ProviderStatus.SUCCESS):
        response = await api.callback(job_id, status)
        assert response.status == 200
        bodies.append(await response.text())
    forged = await api.callback(job_id, ProviderStatus.SUCCESS, token=token[::-1])
    assert forged.status == 401
    bodies.append(await forged.text())
    for path in ("", "/history", "/events"):
        response = await api.client.get(f"/api/music-clips/jobs/{job_id}{path}", headers=auth())
        bodies.append(await response.text())
        bodies.append(str(dict(response.headers)))
    for headers in (auth(UNKNOWN_TOKEN), auth(BOB_TOKEN), auth(**{"x-user-id": "bob"})):
        response = await api.client.get(f"/api/music-clips/jobs/{job_id}", headers=headers)
        assert response.status in (401, 403, 404)
        bodies.append(await response.text())
    response = await api.run_once(channel="leaky")
    assert response.status == 500
    bodies.append(await response.text())
    for path in ("/api/music-clips/channels/channel_xyz/jobs", "/metrics", "/readyz"):
        bodies.append(await (await api.client.get(path, headers=auth())).text())


async def test_no_secret_in_logs_or_responses(caplog: pytest.LogCaptureFixture) -> None:
    """A whole flow with known secrets at DEBUG: none of them in any log record or response."""
    caplog.set_level(logging.DEBUG)
    bodies: list[str] = []
    suno = KeyedSuno()
    async with running_api(
        suno=suno, server_kwargs={"access_log_class": RedactedAccessLogger}
    ) as api:
        api.service.params = LeakyParams()
        await _collect(api, bodies)
        webhook_tokens = [api.signer.token(job.job_id) for job in await _all_jobs(api)]
    logged = caplog.text + "\n".join(
        f"{r.name} {r.getMessage()} {getattr(r, 'exc_text', '')}" for r in caplog.records
    )
    assert "/api/webhooks/suno/music" in logged  # the access lines are there, redacted
    assert "token=***" in logged
    assert "unhandled error" in logged  # the 500 was logged, its secret redacted
    secrets = [ALICE_TOKEN, BOB_TOKEN, UNKNOWN_TOKEN, WEBHOOK_SECRET, SUNO_KEY, *webhook_tokens]
    for secret in secrets:
        assert secret not in logged, f"a secret reached the logs: {secret[:6]}…"
        for body in bodies:
            assert secret not in body, f"a secret reached a response: {secret[:6]}…"


async def _all_jobs(api: Api) -> list[Any]:
    return await api.store.list_jobs("alice", "channel_xyz")
