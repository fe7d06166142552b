"""Issue #24 item 9: a second ``x-user-id``, short Suno keys, one Idempotency-Key at a time."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from _http_harness import CALLBACK_BASE, Api, running_api
from _serving import bearer, get, served, status_of

from clipjobs import InMemoryEventStore, JobState, ServiceConfig

pytestmark = pytest.mark.asyncio


async def test_a_second_x_user_id_header_is_400(tmp_path: Path) -> None:
    """``x-user-id: alice`` then ``x-user-id: bob`` is 400 naming the header; no job is made."""
    async with served(tmp_path) as running:
        for path, method in (
            ("/api/music-clips/channels/c1/runOnce", b"POST"),
            ("/api/music-clips/jobs/job_1767225600000_abcdef", b"GET"),
        ):
            raw = get(path, bearer(), b"x-user-id: alice", b"x-user-id: bob", b"Content-Length: 0")
            answer = await running.request(raw.replace(b"GET", method, 1))
            assert status_of(answer) == 400, answer
            assert b'"field": "x-user-id"' in answer
        assert await running.server.store.list_jobs("alice", "c1") == []


class KeyCheckBarrier(InMemoryEventStore):
    """Holds each idempotency-key look-up's answer until ``n`` were made: the requests overlap."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n
        self.arrived = 0
        self.all_in = asyncio.Event()

    async def find_by_idempotency_key(self, user_id: str, key: str) -> JobState | None:
        found = await super().find_by_idempotency_key(user_id, key)
        self.arrived += 1
        if self.arrived >= self.n:
            self.all_in.set()
        await asyncio.wait_for(self.all_in.wait(), 30)  # a hang guard
        return found


async def _burst(api: Api, key: str, prompts: list[str]) -> list[tuple[int, dict[str, Any], str]]:
    """``runOnce`` with one Idempotency-Key and these prompts, all at once."""
    store = api.store
    assert isinstance(store, KeyCheckBarrier)
    store.arrived = 0
    store.all_in.clear()
    answers = await asyncio.gather(
        *(api.run_once("c1", headers={"Idempotency-Key": key}, json={"prompt": p}) for p in prompts)
    )
    return [(a.status, await a.json(), a.headers.get("Retry-After", "")) for a in answers]


@pytest.mark.parametrize("exclusive", [True, False])
async def test_concurrent_run_once_with_one_idempotency_key(exclusive: bool) -> None:
    """Ten overlapping runOnce calls with one key: one job, the rest 409 IDEMPOTENCY_KEY_IN_USE.

    They were 409 JOB_ALREADY_RUNNING (with one job per channel). Each 409 names
    the job and says when to retry; an overlapping call with another body is
    422 IDEMPOTENCY_KEY_REUSED; a retry once they are done gets the job (202).
    """
    n = 10
    config = ServiceConfig(callback_base_url=CALLBACK_BASE, one_job_per_channel=exclusive)
    async with running_api(store=KeyCheckBarrier(n), service_config=config) as api:
        same = await _burst(api, "click-7", ["sea"] * n)
        assert sorted(status for status, _, _ in same) == [202] + [409] * (n - 1), same
        [job_id] = {body["jobId"] for _, body, _ in same}
        for status, body, retry_after in same:
            if status == 409:
                assert body["error"] == "IDEMPOTENCY_KEY_IN_USE" and retry_after == "3"
        retry = await api.run_once(
            "c1", headers={"Idempotency-Key": "click-7"}, json={"prompt": "sea"}
        )
        assert retry.status == 202 and (await retry.json())["jobId"] == job_id

        mixed = await _burst(api, "click-8", ["sea", "forest"] * (n // 2))
        winners = [body for status, body, _ in mixed if status == 202]
        if exclusive:  # the channel is still held by the first job
            assert all(body["error"] == "JOB_ALREADY_RUNNING" for _, body, _ in mixed), mixed
            return
        assert len(winners) == 1
        won = (await api.store.load(winners[0]["jobId"])).params.prompt  # type: ignore[union-attr]
        for (status, body, _), prompt in zip(mixed, ["sea", "forest"] * (n // 2), strict=True):
            if status == 202:
                continue
            assert body["jobId"] == winners[0]["jobId"]
            want = (
                (409, "IDEMPOTENCY_KEY_IN_USE")
                if prompt == won
                else (422, "IDEMPOTENCY_KEY_REUSED")
            )
            assert (status, body["error"]) == want, body
