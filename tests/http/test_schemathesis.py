"""schemathesis on docs/openapi.yaml over real HTTP on 127.0.0.1: no 5xx, documented answers.

Every operation of the document is fuzzed (a route added to the app must be
added to the document, ``test_openapi.py`` checks, and so lands here), with a
bounded number of examples each (``CLIPJOBS_SCHEMATHESIS_EXAMPLES``, 25) so
the run stays well under a minute. The API is served as ``clipjobs serve``
serves it: connection-bounded, with the request-head time limit.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Iterator

import pytest
from _http_harness import ALICE_TOKEN, TOKENS, new_service
from aiohttp import web
from hypothesis import HealthCheck, settings

from clipjobs import InMemoryEventStore, TokenAuthenticator
from clipjobs_aiohttp import (
    DEFAULT_HEAD_TIMEOUT_S,
    ApiConfig,
    BoundedSockSite,
    add_subscriptions,
    create_app,
    load_openapi,
)

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed")
from schemathesis import checks as st_checks  # noqa: E402

schema = schemathesis.openapi.from_dict(load_openapi())

CHECKS = [
    st_checks.not_a_server_error,
    st_checks.status_code_conformance,
    st_checks.content_type_conformance,
    st_checks.response_schema_conformance,
]


async def _nowhere(host: str) -> list[str]:
    raise OSError(f"{host} does not resolve here")


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    """The API served from a thread of its own, since schemathesis calls it synchronously."""
    loop = asyncio.new_event_loop()
    store = InMemoryEventStore()
    app = create_app(
        new_service(store),
        TokenAuthenticator(TOKENS),
        ApiConfig(long_poll_max_s=0.05, sse_keepalive_s=0.05),
    )
    add_subscriptions(app, store, resolve=_nowhere)  # no DNS: every name is unknown
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=DEFAULT_HEAD_TIMEOUT_S)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)

    async def start() -> str:
        await runner.setup()
        await BoundedSockSite(runner, sock).start()
        host, port = sock.getsockname()[:2]
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
        sock.close()


def test_every_operation_of_the_document_is_fuzzed() -> None:
    """The operations schemathesis runs are exactly the document's: none is skipped."""
    documented = {
        (method.upper(), path) for path, item in load_openapi()["paths"].items() for method in item
    }
    fuzzed = set()
    for result in schema.get_all_operations():
        operation = result.ok()
        fuzzed.add((operation.method.upper(), operation.path))
    assert fuzzed == documented


@schema.parametrize()
@settings(
    max_examples=int(os.environ.get("CLIPJOBS_SCHEMATHESIS_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_api_conforms_to_its_openapi_document(case: schemathesis.Case, base_url: str) -> None:
    """Generated requests for every operation get no 5xx and answers matching the document."""
    response = case.call(
        base_url=base_url, headers={"Authorization": f"Bearer {ALICE_TOKEN}"}, timeout=10
    )
    case.validate_response(response, checks=CHECKS)
