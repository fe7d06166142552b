"""Hypothesis: no body, header, path id or callback payload gets a 5xx or touches another job."""

from __future__ import annotations

import json
import os
import string
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import pytest
import pytest_asyncio
from _http_harness import ALICE_TOKEN, BOB_TOKEN, REQUEST_HEADERS, Api, running_api
from attrs import frozen
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clipjobs import ProviderStatus
from clipjobs_aiohttp import ApiConfig

pytestmark = pytest.mark.asyncio

# One server for all examples of a test, on purpose: state piles up as it would in production.
FUZZ = settings(
    max_examples=int(os.environ.get("CLIPJOBS_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
run_once_bodies = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {},
        optional=dict.fromkeys(
            (
                "userId",
                "prompt",
                "style",
                "title",
                "customMode",
                "instrumental",
                "model",
                "negativeTags",
            ),
            json_values,
        ),
    ),
)
header_text = st.text(
    alphabet=string.printable.replace("\r", "")
    .replace("\n", "")
    .replace("\x0b", "")
    .replace("\x0c", ""),
    max_size=40,
)
headers = st.dictionaries(st.sampled_from(REQUEST_HEADERS), header_text, max_size=4)
tokens = st.sampled_from([ALICE_TOKEN, BOB_TOKEN, "", "nope", ALICE_TOKEN + "x"])
path_ids = st.text(min_size=1, max_size=40) | st.from_regex(
    r"job_\d{13}_[a-z0-9]{6,10}", fullmatch=True
)


@frozen
class Arena:
    """The API, and Bob's job that nothing Alice or a stranger sends may change."""

    api: Api
    victim: str
    victim_task: str
    victim_version: int
    own: str

    async def assert_victim_untouched(self) -> None:
        assert await self.api.version(self.victim) == self.victim_version

    def assert_victim_hidden(self, status: int, text: str) -> None:
        """An answer to anyone but Bob shows nothing of his job: not its task, and its id only
        in a refusal (a 404 repeats the id it was asked for).
        """
        assert self.victim_task not in text, text
        if self.victim in text:
            assert status in (401, 403, 404), (status, text)


@pytest_asyncio.fixture
async def arena() -> AsyncIterator[Arena]:
    async with running_api(config=ApiConfig(long_poll_max_s=0.01, sse_keepalive_s=0.01)) as api:
        victim = await api.start("shared", token=BOB_TOKEN)
        await api.service.send(victim)
        own = await api.start("mine")
        await api.service.send(own)
        yield Arena(api, victim, await api.task_id(victim), await api.version(victim), own)


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


async def _check(arena: Arena, response: Any, *, as_bob: bool = False) -> None:
    """No 5xx, a request id, Bob's job unchanged, and (unless Bob asked) hidden."""
    text = await response.text()
    assert response.status < 500, text
    assert response.headers["X-Request-Id"].startswith("req_")
    if response.content_type == "application/json":
        assert '"requestId"' in text
    await arena.assert_victim_untouched()
    if not as_bob:
        arena.assert_victim_hidden(response.status, text)


@FUZZ
@given(body=run_once_bodies, extra=headers, token=tokens, channel=path_ids)
async def test_run_once_never_5xx(
    arena: Arena, body: Any, extra: dict[str, str], token: str, channel: str
) -> None:
    """Any JSON body, headers, token and channel id: no 5xx, Bob's job unchanged."""
    response = await arena.api.client.post(
        f"/api/music-clips/channels/{quote(channel, safe='')}/runOnce",
        json=body,
        headers={**_auth(token), **extra},
    )
    await _check(arena, response, as_bob=token == BOB_TOKEN)


@FUZZ
@given(raw=st.binary(max_size=300), token=tokens)
async def test_raw_bodies_never_5xx(arena: Arena, raw: bytes, token: str) -> None:
    """Arbitrary bytes as a runOnce or callback body: no 5xx, Bob's job unchanged."""
    api = arena.api
    response = await api.client.post(
        "/api/music-clips/channels/c9/runOnce", data=raw, headers=_auth(token)
    )
    await _check(arena, response, as_bob=token == BOB_TOKEN)
    response = await api.client.post(
        "/api/webhooks/suno/music",
        params={"job": arena.own, "token": api.signer.token(arena.own)},
        data=raw,
    )
    await _check(arena, response)


@FUZZ
@given(
    job_id=path_ids | st.sampled_from(["victim", "own"]),
    extra=headers,
    token=tokens,
    suffix=st.sampled_from(["", "/history", "/events"]),
    query=st.dictionaries(st.sampled_from(["lang", "limit"]), header_text, max_size=2),
)
async def test_reads_never_5xx(
    arena: Arena, job_id: str, extra: dict[str, str], token: str, suffix: str, query: dict[str, str]
) -> None:
    """GET job/history/events with any id, headers and query: no 5xx; Bob's job stays hidden
    from everyone but Bob (never a 200 or a 304 for it, nothing of it in any answer).
    """
    api = arena.api
    target = {"victim": arena.victim, "own": arena.own}.get(job_id, job_id)
    as_bob = token == BOB_TOKEN
    response = await api.client.get(
        f"/api/music-clips/jobs/{quote(target, safe='')}{suffix}",
        params=query,
        headers={**_auth(token), **extra},
    )
    if target == arena.victim and not as_bob:
        assert response.status in (401, 403, 404), response.status
    if suffix == "/events" and response.status == 200:
        # A live stream, endless: only ever of the caller's own job.
        line = await response.content.readline()
        while line and not line.startswith(b"data:"):
            line = await response.content.readline()
        response.close()
        shown = json.loads(line[5:])["jobId"]
        assert (shown, token) in ((arena.own, ALICE_TOKEN), (arena.victim, BOB_TOKEN)), shown
    else:
        await _check(arena, response, as_bob=as_bob)
    listing = await api.client.get(
        f"/api/music-clips/channels/{quote(job_id, safe='')}/jobs",
        params=query,
        headers={**_auth(token), **extra},
    )
    await _check(arena, listing, as_bob=as_bob)


@FUZZ
@given(
    payload=st.one_of(
        json_values,
        st.fixed_dictionaries(
            {
                "task_id": st.sampled_from(["victim", "own", "unknown"]) | st.text(max_size=10),
                "status": st.sampled_from([s.value for s in ProviderStatus]) | st.text(max_size=8),
            }
        ),
    ),
    job=st.sampled_from(["own", "victim", "other"]) | st.text(max_size=20),
    token_for=st.sampled_from(["own", "victim", "none", "garbage"]),
)
async def test_callbacks_never_5xx_nor_touch_another_job(
    arena: Arena, payload: Any, job: str, token_for: str
) -> None:
    """Bob's task under Alice's token, bad tokens, junk payloads: no 5xx, Bob's job untouched."""
    api = arena.api
    names = {"own": arena.own, "victim": arena.victim}
    job_id = names.get(job, job)
    if isinstance(payload, dict) and payload.get("task_id") == "victim":
        payload = {**payload, "task_id": arena.victim_task}
    if token_for == "own":
        token: str | None = api.signer.token(arena.own)
    elif token_for == "victim":
        token = "0" * 32  # nobody but the server knows Bob's token
    elif token_for == "garbage":
        token = "garbage"
    else:
        token = None
    params = {"job": job_id} | ({"token": token} if token is not None else {})
    response = await api.client.post("/api/webhooks/suno/music", params=params, json=payload)
    await _check(arena, response)
