"""Server-Sent Events: first state, one event per change, resume, keep-alive, end, disconnects."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from _http_harness import TOKENS, Api, auth, new_service, running_api
from aiohttp import web

from clipjobs import InMemoryEventStore, JobRequest, ProviderStatus, TokenAuthenticator
from clipjobs_aiohttp import ApiConfig, create_app

pytestmark = pytest.mark.asyncio


class Stream:
    """Reads an SSE response into events and comments."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.comments: list[str] = []

    async def next_event(self) -> dict[str, Any] | None:
        """The next dispatched event, or None at the end of the stream."""
        fields: dict[str, Any] = {}
        while True:
            raw = await self.response.content.readline()
            if not raw:
                return None
            line = raw.decode().rstrip("\n")
            if line.startswith(":"):
                self.comments.append(line)
                continue
            if not line:
                if "data" in fields:
                    fields["data"] = json.loads(fields["data"])
                    return fields
                fields = {}
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")

    async def rest(self) -> list[dict[str, Any]]:
        events = []
        while (event := await self.next_event()) is not None:
            events.append(event)
        return events


async def _open(api: Api, job_id: str, **headers: str) -> Stream:
    response = await api.client.get(
        f"/api/music-clips/jobs/{job_id}/events", headers=auth(**headers)
    )
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert response.headers["X-Request-Id"].startswith("req_")
    return Stream(response)


async def test_stream_sends_the_state_then_each_change_and_ends_when_done(api: Api) -> None:
    """The first event is the current state; changes follow with rising ids; done ends it."""
    job_id = await api.start()
    stream = await _open(api, job_id)
    first = await stream.next_event()
    assert first is not None
    assert first["id"] == "1" and first["event"] == "job"
    assert first["data"]["stage"] == "STAGE_10_REQUEST_ACCEPTED"
    assert first["data"]["jobId"] == job_id and first["data"]["requestId"].startswith("req_")
    await api.service.send(job_id)
    await api.callback(job_id, ProviderStatus.TEXT_SUCCESS)
    await api.callback(job_id, ProviderStatus.SUCCESS)
    rest = await stream.rest()
    ids = [int(e["id"]) for e in rest]
    assert ids == sorted(set(ids)) and ids[0] > 1
    assert rest[-1]["data"]["stage"] == "STAGE_50_SUNO_SUCCESS"
    assert rest[-1]["data"]["version"] == ids[-1] == await api.version(job_id)
    assert rest[-1]["data"]["audioUrl"]


async def test_last_event_id_resumes_without_repeating(api: Api) -> None:
    """With Last-Event-ID equal to the version, the first event is the next change."""
    job_id = await api.start()
    await api.service.send(job_id)
    seen = await api.version(job_id)
    stream = await _open(api, job_id, **{"Last-Event-ID": str(seen)})
    await api.callback(job_id, ProviderStatus.TEXT_SUCCESS)
    event = await stream.next_event()
    assert event is not None
    assert int(event["id"]) == seen + 1
    assert event["data"]["stage"] == "STAGE_40_SUNO_PENDING"
    stream.response.close()


async def test_resume_of_a_done_job_ends_at_once(api: Api) -> None:
    """A reconnect that has seen the final version gets no event and the stream ends."""
    job_id = await api.start()
    await api.service.send(job_id)
    await api.callback(job_id, ProviderStatus.SUCCESS)
    stream = await _open(api, job_id, **{"Last-Event-ID": str(await api.version(job_id))})
    assert await stream.rest() == []
    stream = await _open(api, job_id, **{"Last-Event-ID": "garbage"})
    events = await stream.rest()
    assert [e["data"]["stage"] for e in events] == ["STAGE_50_SUNO_SUCCESS"]


async def test_keep_alive_comment_on_silence() -> None:
    """A quiet stream sends ': keep-alive' comments every sse_keepalive_s."""
    async with running_api(config=ApiConfig(sse_keepalive_s=0.02)) as api:
        job_id = await api.start()
        stream = await _open(api, job_id)
        assert await stream.next_event() is not None
        lines: list[bytes] = []
        while len(lines) < 3:
            line = (await stream.response.content.readline()).strip()
            if line:
                lines.append(line)
        assert lines == [b": keep-alive"] * 3
        stream.response.close()


async def test_english_stream_by_accept_language(api: Api) -> None:
    """The stream's texts follow Accept-Language like GET's."""
    job_id = await api.start()
    stream = await _open(api, job_id, **{"Accept-Language": "en"})
    event = await stream.next_event()
    assert event is not None
    assert event["data"]["progressText"].startswith("Request accepted")
    stream.response.close()


async def until(check: Callable[[], bool], what: str, *, within_s: float = 20.0) -> None:
    """Wait until ``check()`` holds; fail naming ``what`` if it never does (a hang guard)."""
    try:
        async with asyncio.timeout(within_s):
            while not check():
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"never happened: {what}") from None


async def test_client_disconnect_releases_the_waiter(api: Api) -> None:
    """A client that goes away leaves no request waiting on the store's change feed."""
    job_id = await api.start()
    stream = await _open(api, job_id)
    assert await stream.next_event() is not None
    changes = api.store._changes
    await until(lambda: changes.waiting == 1, "the open stream waits on the change feed")
    stream.response.close()
    await until(lambda: changes.waiting == 0, "the closed stream's waiter is released")


async def test_server_shutdown_ends_open_streams_and_long_polls() -> None:
    """With a plain AppRunner (no handler cancellation), shutdown ends streams and long-polls."""
    store = InMemoryEventStore()
    service = new_service(store)
    outer = web.Application()
    outer.add_subapp("/clips", create_app(service, TokenAuthenticator(TOKENS), ApiConfig()))
    runner = web.AppRunner(outer, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    job = (await service.start_job(JobRequest("c1", "alice"))).job
    base = f"http://127.0.0.1:{port}/clips/api/music-clips/jobs/{job.job_id}"
    async with store, aiohttp.ClientSession(headers=auth()) as session:
        response = await session.get(f"{base}/events")
        stream = Stream(response)
        assert await stream.next_event() is not None
        poll = asyncio.ensure_future(
            session.get(base, headers={"If-None-Match": '"1"', "Prefer": "wait=60"})
        )
        await until(lambda: store._changes.waiting == 2, "the stream and the long-poll both wait")
        async with asyncio.timeout(20):  # a hang guard: the runner would wait 60 s otherwise
            await runner.cleanup()
            assert await stream.rest() == []
            polled = await poll
            assert polled.status == 304
        response.close()
        polled.close()


async def test_a_last_event_id_from_the_future_starts_over_and_the_stream_ends(api: Api) -> None:
    """Last-Event-ID above the job's version (issue #24 item 6): the whole state, then the end."""
    done = await api.start("done")
    await api.service.send(done)
    await api.callback(done, ProviderStatus.SUCCESS)
    stream = await _open(api, done, **{"Last-Event-ID": "999"})
    async with asyncio.timeout(20):  # a hang guard: the bug was a stream that never ended
        events = await stream.rest()
    assert [(int(e["id"]), e["data"]["stage"]) for e in events] == [
        (await api.version(done), "STAGE_50_SUNO_SUCCESS")
    ]

    running = await api.start("running")
    await api.service.send(running)
    stream = await _open(api, running, **{"Last-Event-ID": "999"})
    first = await stream.next_event()
    assert first is not None and int(first["id"]) == await api.version(running)
    await api.callback(running, ProviderStatus.SUCCESS)
    async with asyncio.timeout(20):
        rest = await stream.rest()
    assert rest[-1]["data"]["stage"] == "STAGE_50_SUNO_SUCCESS"
