"""The fleet's API over a real store: a SQLite file or a fresh PostgreSQL schema.

Alice and Bob are users, Root is an admin (``CLIPJOBS_ADMIN_TOKENS``). Jobs
are appended straight to the store at chosen times, as the workers would
have left them; the API is a real server on 127.0.0.1:0.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from attrs import define

from _backends import PG_DSN, scratch_pg_store, scripted_service
from clipjobs import (
    EventStore,
    FakeClock,
    JobService,
    JobState,
    TokenAuthenticator,
)
from clipjobs.domain.commands import FailJob, MarkRequestSent
from clipjobs.testing import new_job, step
from clipjobs_aiohttp import ApiConfig, create_app
from clipjobs_sqlite import SQLiteEventStore

ALICE = "alice-fleet-token-01"
BOB = "bob-fleet-token-0002"
ROOT = "root-fleet-token-003"
TOKENS = {ALICE: "alice", BOB: "bob"}
ADMINS = {ROOT: "root"}
T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@define
class Fleet:
    client: TestClient[web.Request, web.Application]
    service: JobService
    store: EventStore
    clock: FakeClock

    async def add(
        self,
        user: str,
        *,
        channel: str | None = None,
        at: datetime | None = None,
        stage: str = "accepted",
    ) -> JobState:
        """A job of ``user`` created at ``at``: accepted, sent or failed."""
        commit = new_job(
            at=at or self.clock.now(),
            user_id=user,
            channel_id=channel or f"ch-{secrets.token_hex(3)}",
        )
        await self.store.append(commit)
        state = commit.state
        if stage in ("sent", "failed"):
            c = step(state, MarkRequestSent(state.created_at))
            await self.store.append(c)
            state = c.state
        if stage == "failed":
            c = step(state, FailJob("SUNO_REJECTED", "refused", state.updated_at))
            await self.store.append(c)
            state = c.state
        return state

    async def get(self, path: str, token: str = ROOT, **params: Any) -> tuple[int, dict[str, Any]]:
        response = await self.client.get(path, headers=auth(token), params=params)
        return response.status, await response.json()

    async def jobs(self, token: str = ROOT, **params: Any) -> tuple[int, dict[str, Any]]:
        return await self.get("/api/music-clips/jobs", token, **params)

    async def ids(self, token: str = ROOT, **params: Any) -> list[str]:
        status, body = await self.jobs(token, limit="200", **params)
        assert status == 200, body
        return [j["jobId"] for j in body["jobs"]]


@contextlib.asynccontextmanager
async def open_store(backend: str, tmp_path: Path) -> AsyncIterator[EventStore]:
    if backend == "sqlite":
        async with SQLiteEventStore(tmp_path / "fleet.db", synchronous="NORMAL") as store:
            yield store
        return
    async with scratch_pg_store(PG_DSN, f"t_{secrets.token_hex(6)}", max_size=4) as pg:
        yield pg


@contextlib.asynccontextmanager
async def running_fleet(
    store: EventStore,
    *,
    config: ApiConfig | None = None,
    stale_after_s: float = 60.0,
) -> AsyncIterator[Fleet]:
    clock = FakeClock(T0 + timedelta(days=1))
    service = scripted_service(store, clock, stale_after_s=stale_after_s)
    app = create_app(service, TokenAuthenticator(TOKENS, ADMINS), config or ApiConfig())
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
        yield Fleet(client, service, store, clock)
