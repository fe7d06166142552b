"""schemathesis on docs/openapi.yaml over real HTTP on 127.0.0.1: no 5xx, documented answers."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
from _http_harness import ALICE_TOKEN, TOKENS
from aiohttp import web
from hypothesis import HealthCheck, settings

from clipjobs import (
    ChannelDefaults,
    FakeClock,
    InMemoryEventStore,
    JobService,
    ServiceConfig,
    TokenAuthenticator,
    WebhookSigner,
)
from clipjobs.testing import ScriptedSuno
from clipjobs_aiohttp import ApiConfig, create_app, load_openapi

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed")
from schemathesis import checks as st_checks  # noqa: E402

schema = schemathesis.openapi.from_dict(load_openapi())

CHECKS = [
    st_checks.not_a_server_error,
    st_checks.status_code_conformance,
    st_checks.content_type_conformance,
    st_checks.response_schema_conformance,
]


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    """The API served from a thread of its own, since schemathesis calls it synchronously."""
    loop = asyncio.new_event_loop()
    store = InMemoryEventStore()
    service = JobService(
        store,
        ScriptedSuno(),
        ChannelDefaults(),
        WebhookSigner("schemathesis-secret"),
        clock=FakeClock(),
        config=ServiceConfig(callback_base_url="https://clips.example"),
    )
    app = create_app(
        service,
        TokenAuthenticator(TOKENS),
        ApiConfig(long_poll_max_s=0.05, sse_keepalive_s=0.05),
    )
    runner = web.AppRunner(app, access_log=None)

    async def start() -> str:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}"

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=30)
        asyncio.run_coroutine_threadsafe(store.aclose(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_api_conforms_to_its_openapi_document(case: schemathesis.Case, base_url: str) -> None:
    """Generated requests for every operation get no 5xx and answers matching the document."""
    case.call_and_validate(
        base_url=base_url,
        headers={"Authorization": f"Bearer {ALICE_TOKEN}"},
        checks=CHECKS,
        timeout=10,
    )
