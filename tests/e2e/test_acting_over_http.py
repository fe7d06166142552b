"""Cancel and retry over real HTTP (SPEC 10.2): SQLite file, the real Suno client, the fake
Suno as an HTTP server, the API and the workers (``_stack.running_stack``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from _stack import (
    CALLBACKS_ONLY,
    FAST_POLL,
    OTHER_TOKEN,
    TOKEN,
    Stack,
    contiguous,
    event_types,
    running_stack,
)

from clipjobs import JobPolicy, Stage

pytestmark = pytest.mark.asyncio

API = "/api/music-clips/jobs"
ENDINGS = {"SunoSucceeded", "JobFailed", "JobTimedOut", "JobCancelled"}


async def act(
    stack: Stack,
    job_id: str,
    action: str,
    body: Any = None,
    *,
    token: str = TOKEN,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    auth = {"Authorization": f"Bearer {token}", **(headers or {})}
    kwargs: dict[str, Any] = {"data": raw} if raw is not None else {"json": body}
    async with stack.http.post(
        f"{stack.url}{API}/{job_id}/{action}", headers=auth, **kwargs
    ) as response:
        return response.status, await response.json()


async def endings(stack: Stack, job_id: str) -> list[str]:
    history = await stack.history(job_id)
    assert contiguous(history)
    return [t for t in event_types(history) if t in ENDINGS]


@pytest.mark.parametrize(
    ("scenario", "stage", "policy"),
    [
        ("maintenance", Stage.SUNO_REQUEST_SENT, CALLBACKS_ONLY),
        ("no-callback", Stage.SUNO_TASK_CREATED, CALLBACKS_ONLY),
        ("stuck", Stage.SUNO_PENDING, FAST_POLL),
    ],
)
async def test_cancel_in_each_generating_stage(
    tmp_path: Path, scenario: str, stage: Stage, policy: JobPolicy
) -> None:
    """STAGE_20 (retrying after 455), 30 (no callback comes) and 40 (Suno stuck, polled): 200
    with the GET body in STAGE_98, again 200, and afterwards nothing more is recorded or sent."""
    async with running_stack(tmp_path, policy=policy) as stack:
        await stack.configure_fake(scenario=scenario)
        job_id = await stack.start(f"channel_{scenario}")
        await stack.wait_for_stage(job_id, stage)
        status, body = await act(stack, job_id, "cancel", {"reason": "wrong prompt"})
        assert status == 200, body
        assert body["stage"] == "STAGE_98_CANCELLED" and body["done"] is True
        assert body["errorCode"] == "JOB_CANCELLED" and body["retryable"] is True
        assert body["error"] == "Задача отменена: wrong prompt"
        assert (await act(stack, job_id, "cancel"))[0] == 200
        calls = len(stack.calls.calls)
        await asyncio.sleep(0.3)  # the workers go round several times (idle_s 0.02)
        assert await endings(stack, job_id) == ["JobCancelled"]
        assert (await stack.job(job_id))["version"] == body["version"]
        # No more generate retries, no more polls.
        assert len(stack.calls.calls) == calls


async def test_cancel_racing_a_complete_callback_has_one_winner(tmp_path: Path) -> None:
    """50 times: a cancel and Suno's complete callback at once; one terminal event each time,
    and the loser is told (409 JOB_ALREADY_FINISHED, or the callback kept as late)."""
    async with running_stack(tmp_path, fake={"scenario": "no-callback"}) as stack:
        jobs = [await stack.start(f"race_{i}") for i in range(50)]
        for job_id in jobs:
            body = await stack.wait_for_stage(job_id, Stage.SUNO_TASK_CREATED)
            task = body["sunoTaskId"]
            url = stack.service.signer.callback_url(stack.url, job_id)
            complete = {
                "code": 200,
                "msg": "All generated successfully.",
                "data": {
                    "callbackType": "complete",
                    "task_id": task,
                    "data": [
                        {
                            "id": f"{task}-1",
                            "audio_url": "https://cdn.example/1.mp3",
                            "stream_audio_url": "https://cdn.example/s1",
                            "image_url": "https://cdn.example/1.jpeg",
                            "title": "Race",
                            "duration": 3.0,
                        }
                    ],
                },
            }

            async def callback(url: str = url, complete: dict[str, Any] = complete) -> int:
                async with stack.http.post(url, json=complete) as response:
                    return response.status

            (status, answer), _ = await asyncio.gather(act(stack, job_id, "cancel"), callback())
            final = await stack.job(job_id)
            ended = await endings(stack, job_id)
            assert len(ended) == 1, ended
            if final["stage"] == "STAGE_98_CANCELLED":
                assert status == 200
            else:
                assert final["stage"] == "STAGE_50_SUNO_SUCCESS"
                assert (status, answer["error"]) == (409, "JOB_ALREADY_FINISHED")


async def test_retry_after_generate_failed(tmp_path: Path) -> None:
    async with running_stack(tmp_path, fake={"scenario": "generate-failed"}) as stack:
        parent = await stack.start()
        body = await stack.wait_for_stage(parent, Stage.FAILED)
        assert body["retryable"] is True and body["retriedBy"] is None
        await stack.configure_fake(scenario="success")
        status, child = await act(stack, parent, "retry", headers={"Idempotency-Key": "r-1"})
        assert status == 202, child
        assert child["retryOf"] == parent and child["stage"] == "STAGE_10_REQUEST_ACCEPTED"
        # The same key: the same child, no second job.
        again = await act(stack, parent, "retry", headers={"Idempotency-Key": "r-1"})
        assert again == (202, {**child, "requestId": again[1]["requestId"]})
        done = await stack.wait_for_stage(child["jobId"], Stage.SUNO_SUCCESS)
        assert done["retryOf"] == parent
        assert (await stack.job(parent))["retriedBy"] == child["jobId"]
        assert (await stack.tasks_per_job())[child["jobId"]] == 1


async def test_retry_after_a_timeout(tmp_path: Path) -> None:
    policy = JobPolicy(timeout_s=1, max_s=1, poll_after_s=3600, poll_interval_s=3600)
    async with running_stack(tmp_path, fake={"scenario": "no-callback"}, policy=policy) as stack:
        parent = await stack.start()
        body = await stack.wait_for_stage(parent, Stage.TIMEOUT)
        assert body["retryable"] is True
        status, child = await act(stack, parent, "retry", {"from": "start"})
        assert status == 202 and child["retryOf"] == parent
        assert (await stack.job(parent))["retriedBy"] == child["jobId"]


async def test_bad_inputs_change_nothing(tmp_path: Path) -> None:
    """Another user's job, a running job's retry, an unknown ``from``, a cancel body over
    4 KiB, a finished job's cancel: each a clear error, and the job stays as it was."""
    async with running_stack(tmp_path, fake={"scenario": "no-callback"}) as stack:
        job_id = await stack.start()
        before = await stack.wait_for_stage(job_id, Stage.SUNO_TASK_CREATED)
        cases = [
            (("cancel", None), {"token": OTHER_TOKEN}, 404, "JOB_NOT_FOUND"),
            (("retry", None), {"token": OTHER_TOKEN}, 404, "JOB_NOT_FOUND"),
            (("retry", None), {}, 409, "JOB_NOT_RETRYABLE"),
            (("retry", {"from": "middle"}), {}, 400, "INVALID_REQUEST"),
            (("retry", {"from": 1}), {}, 400, "INVALID_REQUEST"),
            (("cancel", {"reason": 5}), {}, 400, "INVALID_REQUEST"),
            (("cancel", {"why": "x"}), {}, 400, "INVALID_REQUEST"),
            (("cancel", {"reason": "x" * 501}), {}, 400, "INVALID_REQUEST"),
            (("cancel", None), {"raw": b"[1, 2]"}, 400, "INVALID_REQUEST"),
            (("cancel", None), {"raw": b"{" + b" " * 5000 + b"}"}, 413, "PAYLOAD_TOO_LARGE"),
        ]
        for (action, body), options, status, code in cases:
            got, answer = await act(stack, job_id, action, body, **options)
            assert (got, answer["error"]) == (status, code), (action, body, answer)
            assert answer["message"]
        after = await stack.job(job_id)
        assert after["version"] == before["version"] and after["retriedBy"] is None
        # A finished job: 409 JOB_ALREADY_FINISHED, nothing changes.
        await stack.configure_fake(scenario="success")
        done_id = await stack.start("channel_2")
        done = await stack.wait_for_stage(done_id, Stage.SUNO_SUCCESS)
        got, answer = await act(stack, done_id, "cancel")
        assert (got, answer["error"]) == (409, "JOB_ALREADY_FINISHED")
        assert (await stack.job(done_id))["version"] == done["version"]
        assert done["retryable"] is None
