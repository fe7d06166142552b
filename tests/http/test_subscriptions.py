"""The subscription routes over a real server: secrets shown once, every bad input a clear 400.

The API runs on 127.0.0.1:0 over the in-memory store; names resolve through
an injected resolver, so "a name that resolves to 10.x" needs no DNS.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from _http_harness import ALICE_TOKEN as ALICE
from _http_harness import BOB_TOKEN as BOB
from _http_harness import auth, running_api
from aiohttp import web

from clipjobs import InMemoryEventStore
from clipjobs_aiohttp import add_subscriptions

pytestmark = pytest.mark.asyncio

API = "/api/music-clips/subscriptions"

#: The names the tests' resolver knows.
NAMES = {
    "hooks.example.org": ["93.184.215.14"],
    "inside.example.org": ["10.1.2.3"],
    "mixed.example.org": ["93.184.215.14", "169.254.169.254"],
}


async def fake_resolve(host: str) -> list[str]:
    if host not in NAMES:
        raise OSError(f"{host} does not resolve")
    return NAMES[host]


@contextlib.asynccontextmanager
async def serving(*, allow_private: bool = False, limit: int = 10) -> AsyncIterator[Any]:
    """The API with the subscription routes; yields its client."""

    def subscriptions(app: web.Application, store: InMemoryEventStore) -> None:
        add_subscriptions(
            app, store, max_subscriptions=limit, allow_private=allow_private, resolve=fake_resolve
        )

    async with running_api(setup=subscriptions) as api:
        yield api.client


async def subscribe(client: Any, body: Any, token: str = ALICE) -> tuple[int, dict[str, Any]]:
    response = await client.post(API, json=body, headers=auth(token))
    return response.status, await response.json()


async def listed(client: Any, token: str = ALICE) -> list[dict[str, Any]]:
    response = await client.get(API, headers=auth(token))
    assert response.status == 200
    subs: list[dict[str, Any]] = (await response.json())["subscriptions"]
    return subs


async def test_secret_is_shown_once_and_never_listed(caplog: pytest.LogCaptureFixture) -> None:
    """POST answers 201 with the secret; GET lists without it; no log line carries it."""
    caplog.set_level(logging.DEBUG)
    async with serving() as client:
        status, body = await subscribe(
            client, {"url": "https://hooks.example.org/in", "events": ["job.failed"]}
        )
        assert status == 201, body
        assert body["secret"].startswith("whsec_") and body["id"].startswith("sub_")
        assert body["events"] == ["job.failed"]
        [sub] = await listed(client)
        assert sub == {k: body[k] for k in ("id", "url", "events", "createdAt")}
        assert await listed(client, BOB) == []
        deliveries = await client.get(f"{API}/{body['id']}/deliveries", headers=auth())
        assert (await deliveries.json())["deliveries"] == []
        assert body["secret"] not in caplog.text


async def test_delete_removes_only_the_owners() -> None:
    """DELETE removes the caller's subscription; another user's, or an unknown id, is a 404."""
    async with serving() as client:
        _, body = await subscribe(
            client, {"url": "https://hooks.example.org/in", "events": ["job.succeeded"]}
        )
        sub_id = body["id"]
        for token, path in ((BOB, sub_id), (ALICE, "sub_" + "0" * 24), (ALICE, "nope")):
            response = await client.delete(f"{API}/{path}", headers=auth(token))
            assert response.status == 404
            assert (await response.json())["error"] == "SUBSCRIPTION_NOT_FOUND"
        bob_sees = await client.get(f"{API}/{sub_id}/deliveries", headers=auth(BOB))
        assert bob_sees.status == 404
        response = await client.delete(f"{API}/{sub_id}", headers=auth())
        assert response.status == 200
        assert await listed(client) == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"url": "ftp://hooks.example.org/in", "events": ["job.failed"]}, "INVALID_URL"),
        ({"url": "not a url", "events": ["job.failed"]}, "INVALID_URL"),
        ({"url": "https://u:p@hooks.example.org/", "events": ["job.failed"]}, "INVALID_URL"),
        ({"url": "http://hooks.example.org/in", "events": ["job.failed"]}, "URL_NOT_HTTPS"),
        ({"url": "http://127.0.0.1:9000/in", "events": ["job.failed"]}, "URL_NOT_HTTPS"),
        ({"url": "https://127.0.0.1/in", "events": ["job.failed"]}, "URL_NOT_ALLOWED"),
        ({"url": "https://[::1]/in", "events": ["job.failed"]}, "URL_NOT_ALLOWED"),
        ({"url": "https://[::ffff:10.0.0.1]/in", "events": ["job.failed"]}, "URL_NOT_ALLOWED"),
        ({"url": "https://169.254.169.254/", "events": ["job.failed"]}, "URL_NOT_ALLOWED"),
        ({"url": "https://inside.example.org/in", "events": ["job.failed"]}, "URL_NOT_ALLOWED"),
        ({"url": "https://mixed.example.org/in", "events": ["job.failed"]}, "URL_NOT_ALLOWED"),
        ({"url": "https://nowhere.example.org/", "events": ["job.failed"]}, "URL_UNRESOLVABLE"),
        ({"url": "https://hooks.example.org/in", "events": ["job.done"]}, "UNKNOWN_EVENT_TYPE"),
        ({"url": "https://hooks.example.org/in", "events": []}, "INVALID_REQUEST"),
        ({"url": "https://hooks.example.org/in", "events": "job.failed"}, "INVALID_REQUEST"),
        ({"url": 5, "events": ["job.failed"]}, "INVALID_URL"),
        ([], "INVALID_REQUEST"),
    ],
)
async def test_bad_input_is_a_clear_400_and_stores_nothing(body: Any, code: str) -> None:
    """Each refused subscription answers 400 with its code and leaves the list empty."""
    async with serving() as client:
        status, answer = await subscribe(client, body)
        assert (status, answer["error"]) == (400, code), answer
        assert answer["success"] is False and answer["message"]
        assert await listed(client) == []


async def test_http_and_private_targets_with_the_allow_flag() -> None:
    """With CLIPJOBS_NOTIFY_ALLOW_PRIVATE on, http://127.0.0.1 and [::1] are accepted."""
    async with serving(allow_private=True) as client:
        for url in ("http://127.0.0.1:9000/in", "http://[::1]:9000/in"):
            status, body = await subscribe(client, {"url": url, "events": ["job.failed"]})
            assert status == 201, body
        assert len(await listed(client)) == 2


async def test_one_over_the_limit_is_refused() -> None:
    """The (limit+1)-th subscription is 400 TOO_MANY_SUBSCRIPTIONS; another user is unaffected."""
    async with serving() as client:
        body = {"url": "https://hooks.example.org/in", "events": ["job.failed"]}
        for _ in range(10):
            assert (await subscribe(client, body))[0] == 201
        status, answer = await subscribe(client, body)
        assert (status, answer["error"]) == (400, "TOO_MANY_SUBSCRIPTIONS")
        assert len(await listed(client)) == 10
        assert (await subscribe(client, body, BOB))[0] == 201


async def test_subscriptions_need_a_token() -> None:
    """Without a bearer token every subscription route is 401."""
    async with serving() as client:
        for method, path in (("GET", API), ("POST", API), ("DELETE", f"{API}/x")):
            response = await client.request(method, path)
            assert response.status == 401
