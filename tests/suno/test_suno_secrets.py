"""The Suno API key never shows: not in the client's repr, error messages, tracebacks or logs."""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from clipjobs.domain.errors import SunoError
from clipjobs.domain.events import GenerationParams
from clipjobs_suno import SunoApiClient, SunoTimeouts
from clipjobs_suno.fake import running_fake_suno

pytestmark = pytest.mark.asyncio

KEY = "sk-live-7f3a9c0e1b2d4f6a8c0e2b4d6f8a0c2e"
CALLBACK = "http://127.0.0.1:9/cb?job=j&token=t"


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def shown(exc: BaseException) -> str:
    """Everything a log line or a crash report could print about an exception."""
    return "".join(traceback.format_exception(exc)) + repr(exc) + str(exc)


async def test_repr_and_str_hide_the_key(session: Any) -> None:
    """repr() and str() of the client and of its attributes never contain the key."""
    client = SunoApiClient(session, KEY)
    texts = [repr(client), str(client), repr(vars(client)), str(vars(client))]
    assert not any(KEY in t for t in texts)


async def test_errors_hide_the_key_even_when_the_server_echoes_it(
    session: Any, scripted: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A server echoing the Authorization header back does not put the key in any error or log."""

    async def echo(request: web.Request) -> web.StreamResponse:
        said = request.headers.get("Authorization", "")
        return web.json_response({"code": 400, "msg": f"bad header {said}", "data": None})

    scripted.handler = echo
    client = SunoApiClient(session, KEY, base_url=scripted.url)
    caplog.set_level(logging.DEBUG)
    failures: list[BaseException] = []
    for call in (
        lambda: client.generate(GenerationParams(prompt="a song"), CALLBACK),
        lambda: client.record_info("a" * 32),
        client.credits,
    ):
        with pytest.raises(SunoError) as caught:
            await call()
        failures.append(caught.value)
    assert all(KEY not in shown(exc) for exc in failures)
    assert "***" in str(failures[0])
    assert KEY not in caplog.text


async def test_network_errors_hide_the_key(session: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Refused connections and timeouts raise errors that never mention the key."""
    caplog.set_level(logging.DEBUG)
    client = SunoApiClient(
        session,
        KEY,
        base_url="http://127.0.0.1:9",
        timeouts=SunoTimeouts(connect=0.3, credits=0.3),
    )
    with pytest.raises(SunoError) as caught:
        await client.credits()
    assert KEY not in shown(caught.value)
    assert KEY not in caplog.text


async def test_a_whole_run_against_the_fake_logs_no_key(
    session: Any, receiver: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A job's calls and callbacks against the fake log neither the key nor the webhook token."""
    caplog.set_level(logging.DEBUG)
    async with running_fake_suno(
        api_key=KEY, text_after_s=0, first_after_s=0, complete_after_s=0
    ) as (url, fake):
        client = SunoApiClient(session, KEY, base_url=url)
        task_id = await client.generate(GenerationParams(prompt="a song"), receiver.url)
        await client.record_info(task_id)
        await fake.settle()
        async with session.get(f"{url}/_fake/tasks") as response:
            listing = await response.text()
    assert len(receiver.for_task(task_id)) == 3
    assert KEY not in caplog.text and KEY not in listing
    assert "webhook-secret" not in caplog.text and "webhook-secret" not in listing
    assert json.loads(listing)["tasks"][0]["callBackUrl"].endswith("token=***")
