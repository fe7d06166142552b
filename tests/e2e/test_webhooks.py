"""Signed webhooks from a whole clipjobs to a real receiver that verifies every signature.

``running_server`` (what ``clipjobs serve`` runs) on a SQLite file, the fake
Suno and a receiver, each a real aiohttp server on 127.0.0.1. Backoff is
short so retries come within a second; nothing here reads the wall clock to
judge speed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from _receiver import Receiver, serving
from _stack import FAKE_DEFAULTS

from _procs import free_port
from clipjobs.app.config import Settings
from clipjobs.app.notify import DeliveryStatus, NotifyStore
from clipjobs_cli._serve import RunningServer, running_server
from clipjobs_suno.fake import running_fake_suno

pytestmark = [pytest.mark.asyncio]

TOKEN = "hooks-token-0001"
USER = "hooks-user"
SUNO_KEY = "hooks-suno-key"
EVENTS = ["job.succeeded", "job.clip_ready", "job.failed", "job.timed_out"]


@contextlib.asynccontextmanager
async def clipjobs(tmp_path: Path, **extra: str) -> AsyncIterator[tuple[RunningServer, Any]]:
    """A serving clipjobs against a quick fake Suno, webhooks allowed to 127.0.0.1."""
    async with running_fake_suno("127.0.0.1", 0, api_key=SUNO_KEY, **FAKE_DEFAULTS) as (
        fake_url,
        _,
    ):
        port = free_port()
        env = {
            "CLIPJOBS_DB": f"sqlite:///{tmp_path / 'clipjobs.db'}",
            "CLIPJOBS_PORT": str(port),
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "CLIPJOBS_TOKENS": f"{TOKEN}={USER}",
            "SUNO_API_KEY": SUNO_KEY,
            "SUNO_BASE_URL": fake_url,
            "CLIPJOBS_POLL_AFTER_S": "0.05",
            "CLIPJOBS_POLL_INTERVAL_S": "0.05",
            "CLIPJOBS_NOTIFY_ALLOW_PRIVATE": "on",
            "CLIPJOBS_NOTIFY_BACKOFF_S": "0.05",
            # The bodies compared here are read at different moments: no kept copies
            # appearing in between (media keeping has its own tests).
            "CLIPJOBS_KEEP_MEDIA": "off",
            "CLIPJOBS_MEDIA_DIR": str(tmp_path / "media"),
            **extra,
        }
        async with (
            running_server(Settings.from_env(env)) as server,
            aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http,
        ):
            yield server, http


async def subscribe(server: RunningServer, http: Any, url: str) -> dict[str, Any]:
    async with http.post(
        f"{server.url}/api/music-clips/subscriptions", json={"url": url, "events": EVENTS}
    ) as response:
        assert response.status == 201, await response.text()
        body: dict[str, Any] = await response.json()
        return body


async def start_job(server: RunningServer, http: Any, channel: str = "ch1") -> str:
    async with http.post(f"{server.url}/api/music-clips/channels/{channel}/runOnce") as response:
        assert response.status == 202, await response.text()
        return str((await response.json())["jobId"])


async def attempts(server: RunningServer, http: Any, sub_id: str) -> list[dict[str, Any]]:
    url = f"{server.url}/api/music-clips/subscriptions/{sub_id}/deliveries"
    async with http.get(url) as response:
        assert response.status == 200
        found: list[dict[str, Any]] = (await response.json())["deliveries"]
        return found


async def test_a_finished_job_reaches_a_receiver_that_is_up(tmp_path: Path) -> None:
    """job.succeeded arrives signed, data is the GET body; the attempt is listed and in history."""
    receiver = Receiver()
    async with serving(receiver) as hook, clipjobs(tmp_path) as (server, http):
        sub = await subscribe(server, http, hook)
        receiver.secrets.append(sub["secret"])
        job_id = await start_job(server, http)
        await receiver.wait(lambda: receiver.ok())
        [got] = receiver.received
        assert got.body["type"] == "job.succeeded"
        assert got.body["data"]["jobId"] == job_id
        assert got.body["data"]["stage"] == "STAGE_50_SUNO_SUCCESS"
        assert got.body["timestamp"].endswith("Z")
        async with http.get(f"{server.url}/api/music-clips/jobs/{job_id}") as response:
            assert (await response.json())["tracks"] == got.body["data"]["tracks"]
        listed = await _settled(server, http, sub["id"], 1)
        assert listed[0]["statusCode"] == 200 and listed[0]["webhookId"] == got.webhook_id
        assert listed[0]["nextAttemptAt"] is None and listed[0]["delivered"]
        async with http.get(f"{server.url}/api/music-clips/jobs/{job_id}/history") as response:
            history = await response.json()
        assert [w["webhookId"] for w in history["webhooks"]] == [got.webhook_id]
        assert receiver.unverified == []


async def _settled(server: RunningServer, http: Any, sub_id: str, n: int) -> list[dict[str, Any]]:
    """The attempts list once it holds ``n`` attempts (recording follows the receiver's answer)."""
    store = server.store
    assert isinstance(store, NotifyStore)
    for _ in range(200):
        listed = await attempts(server, http, sub_id)
        if len(listed) >= n:
            return listed
        await _pause()
    raise AssertionError(f"fewer than {n} attempts recorded: {listed}")


async def _pause() -> None:
    await asyncio.sleep(0.05)


async def test_500_then_200_is_retried_with_the_same_webhook_id(tmp_path: Path) -> None:
    """A 500 is retried after the backoff; both tries carry one webhook-id; both are listed."""
    receiver = Receiver(script=[500])
    async with serving(receiver) as hook, clipjobs(tmp_path) as (server, http):
        sub = await subscribe(server, http, hook)
        receiver.secrets.append(sub["secret"])
        await start_job(server, http)
        await receiver.wait(lambda: receiver.ok())
        assert [r.status for r in receiver.received] == [500, 200]
        assert len({r.webhook_id for r in receiver.received}) == 1
        listed = await _settled(server, http, sub["id"], 2)
        assert [a["statusCode"] for a in listed] == [200, 500]  # newest first
        assert listed[1]["nextAttemptAt"] is not None and listed[1]["error"] == "HTTP 500"
        assert [a["attempt"] for a in listed] == [2, 1]


async def test_a_receiver_down_for_three_attempts_gets_it_when_up(tmp_path: Path) -> None:
    """Refused connections are retried; once the receiver listens, the same webhook-id arrives."""
    port = free_port()
    hook = f"http://127.0.0.1:{port}/hook"
    receiver = Receiver()
    async with clipjobs(tmp_path, CLIPJOBS_NOTIFY_BACKOFF_S="0.3") as (server, http):
        sub = await subscribe(server, http, hook)
        receiver.secrets.append(sub["secret"])
        await start_job(server, http)
        failed = await _settled(server, http, sub["id"], 3)
        assert all(a["statusCode"] is None and a["error"] for a in failed)
        async with serving(receiver, port):
            await receiver.wait(lambda: receiver.ok())
            listed = await _settled(server, http, sub["id"], len(failed) + 1)
        assert listed[0]["delivered"] and listed[0]["attempt"] == len(listed) >= 4
        assert {a["webhookId"] for a in listed} == {receiver.received[0].webhook_id}


async def test_a_receiver_that_never_answers_times_out_and_is_retried(tmp_path: Path) -> None:
    """Attempts that get no answer within the timeout are retried, one webhook-id throughout."""
    receiver = Receiver(script=["hang", "hang"])
    async with (
        serving(receiver) as hook,
        clipjobs(tmp_path, CLIPJOBS_NOTIFY_TIMEOUT_S="0.5") as (server, http),
    ):
        sub = await subscribe(server, http, hook)
        receiver.secrets.append(sub["secret"])
        await start_job(server, http)
        await receiver.wait(lambda: receiver.ok())
        assert [r.status for r in receiver.received] == ["hang", "hang", 200]
        assert len({r.webhook_id for r in receiver.received}) == 1
        listed = await _settled(server, http, sub["id"], 3)
        assert [a["error"] for a in listed[1:]] == ["timed out after 0.5 s"] * 2


async def test_a_delivery_failing_past_the_give_up_time_is_failed(tmp_path: Path) -> None:
    """A receiver answering 500 for ever: after CLIPJOBS_NOTIFY_GIVE_UP_S the delivery is failed."""
    receiver = Receiver(default=500)
    async with (
        serving(receiver) as hook,
        clipjobs(tmp_path, CLIPJOBS_NOTIFY_GIVE_UP_S="1") as (
            server,
            http,
        ),
    ):
        sub = await subscribe(server, http, hook)
        receiver.secrets.append(sub["secret"])
        await start_job(server, http)
        store = server.store
        assert isinstance(store, NotifyStore)
        for _ in range(200):
            deliveries = await store.deliveries(sub["id"])
            if deliveries and deliveries[0].status is DeliveryStatus.FAILED:
                break
            await _pause()
        [delivery] = await store.deliveries(sub["id"])
        assert delivery.status is DeliveryStatus.FAILED and delivery.attempts >= 2
        listed = await attempts(server, http, sub["id"])
        assert listed[0]["nextAttemptAt"] is None
        assert len(receiver.received) == delivery.attempts
