"""A real clipjobs API on 127.0.0.1:0 over the in-memory store and the scripted Suno."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer
from attrs import define

from clipjobs import (
    ChannelDefaults,
    Clock,
    EventStore,
    FakeClock,
    InMemoryEventStore,
    JobService,
    ProviderStatus,
    ServiceConfig,
    TokenAuthenticator,
    WebhookSigner,
)
from clipjobs.testing import ScriptedSuno
from clipjobs_aiohttp import ApiConfig, create_app

ALICE_TOKEN = "alice-token-0001"
BOB_TOKEN = "bob-token-000002"
TOKENS = {ALICE_TOKEN: "alice", BOB_TOKEN: "bob"}
WEBHOOK_SECRET = "webhook-secret-for-http-tests"
CALLBACK_BASE = "https://clips.example"
#: The request headers the API reads besides Authorization.
REQUEST_HEADERS = (
    "x-user-id",
    "Idempotency-Key",
    "Accept-Language",
    "If-None-Match",
    "Prefer",
    "Last-Event-ID",
    "Content-Type",
)


def auth(token: str = ALICE_TOKEN, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **headers}


def new_service(
    store: EventStore,
    *,
    suno: ScriptedSuno | None = None,
    clock: Clock | None = None,
    config: ServiceConfig | None = None,
) -> JobService:
    """The service the HTTP tests serve: over ``store`` and the scripted Suno, on a fake clock,
    signing with the tests' webhook secret and calling back to ``CALLBACK_BASE``.
    """
    return JobService(
        store,
        suno or ScriptedSuno(),
        ChannelDefaults(),
        WebhookSigner(WEBHOOK_SECRET),
        clock=clock or FakeClock(),
        config=config or ServiceConfig(callback_base_url=CALLBACK_BASE),
    )


@define
class Api:
    """The running API and its parts, with shortcuts for the seed's flow."""

    client: TestClient[web.Request, web.Application]
    service: JobService
    store: InMemoryEventStore
    suno: ScriptedSuno
    clock: FakeClock
    signer: WebhookSigner
    prefix: str = ""

    def url(self, path: str) -> str:
        return f"{self.prefix}{path}"

    async def run_once(
        self, channel: str = "channel_xyz", token: str = ALICE_TOKEN, **kwargs: Any
    ) -> ClientResponse:
        headers = auth(token, **kwargs.pop("headers", {}))
        return await self.client.post(
            self.url(f"/api/music-clips/channels/{channel}/runOnce"), headers=headers, **kwargs
        )

    async def start(self, channel: str = "channel_xyz", token: str = ALICE_TOKEN) -> str:
        response = await self.run_once(channel, token)
        assert response.status == 202, await response.text()
        return str((await response.json())["jobId"])

    async def get(self, job_id: str, token: str = ALICE_TOKEN, **kwargs: Any) -> ClientResponse:
        headers = auth(token, **kwargs.pop("headers", {}))
        return await self.client.get(
            self.url(f"/api/music-clips/jobs/{job_id}"), headers=headers, **kwargs
        )

    async def job(self, job_id: str, token: str = ALICE_TOKEN) -> dict[str, Any]:
        response = await self.get(job_id, token)
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body

    async def task_id(self, job_id: str) -> str:
        state = await self.store.load(job_id)
        assert state is not None and state.task_id is not None
        return state.task_id

    async def callback(
        self,
        job_id: str,
        status: ProviderStatus,
        *,
        token: str | None = None,
        task_id: str | None = None,
    ) -> ClientResponse:
        task = task_id or await self.task_id(job_id)
        params = {"job": job_id, "token": token if token is not None else self.signer.token(job_id)}
        return await self.client.post(
            self.url("/api/webhooks/suno/music"),
            params=params,
            json=self.suno.callback(task, status),
        )

    async def version(self, job_id: str) -> int:
        state = await self.store.load(job_id)
        assert state is not None
        return state.version


@contextlib.asynccontextmanager
async def running_api(
    *,
    config: ApiConfig | None = None,
    service_config: ServiceConfig | None = None,
    suno: ScriptedSuno | None = None,
    prefix: str | None = None,
    server_kwargs: dict[str, Any] | None = None,
    store: InMemoryEventStore | None = None,
    setup: Callable[[web.Application, InMemoryEventStore], None] | None = None,
) -> AsyncIterator[Api]:
    """Serve the API (mounted under ``prefix`` in a parent app when given)."""
    store = store or InMemoryEventStore()
    suno = suno or ScriptedSuno()
    clock = FakeClock()
    service = new_service(store, suno=suno, clock=clock, config=service_config)
    app = create_app(service, TokenAuthenticator(TOKENS), config or ApiConfig())
    if setup is not None:  # more routes (subscriptions), before the app is frozen
        setup(app, store)
    served = app
    if prefix is not None:
        served = web.Application()
        served.add_subapp(prefix, app)
    server = TestServer(served, host="127.0.0.1", port=0)
    # Runner options (access_log_class…) only reach the runner through start_server.
    await server.start_server(**(server_kwargs or {}))
    async with store, TestClient(server) as client:
        yield Api(client, service, store, suno, clock, service.signer, prefix or "")
