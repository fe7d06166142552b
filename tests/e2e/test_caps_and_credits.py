"""What a user may start, over real HTTP (issues 23 and 15), on SQLite and PostgreSQL.

- The cap: with the default ``CLIPJOBS_MAX_ACTIVE_PER_USER`` (20), a user's 21st concurrent
  runOnce answers 429 ``TOO_MANY_ACTIVE_JOBS`` with ``Retry-After`` and the active count, and
  creates nothing; another user is not affected; once the 20 finish, runOnce works again.
  ``CLIPJOBS_MAX_STARTS_PER_USER_PER_HOUR``, once reached, answers the same.
- Credits: at 0, runOnce answers 402; after a top-up a 0 is asked again within 3 s, so 3.5 s
  later runOnce answers 202 and the job succeeds; a generate answered 429 (no credits) fails
  its job with ``SUNO_NO_CREDITS`` and the next runOnce answers 402 without asking Suno.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from _stack import OTHER_TOKEN, TOKEN, USER, Stack, running_stack

from clipjobs import FakeClock, ServiceConfig, Stage

pytestmark = pytest.mark.asyncio

DEFAULT_CAP = ServiceConfig().max_active_per_user
DONE = (Stage.SUNO_SUCCESS, Stage.FAILED, Stage.TIMEOUT)
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


async def run_once_raw(
    stack: Stack, channel: str, token: str = TOKEN
) -> tuple[int, dict[str, str], dict[str, Any]]:
    """runOnce's status, headers and body."""
    async with stack.http.post(
        f"{stack.url}/api/music-clips/channels/{channel}/runOnce",
        headers={"Authorization": f"Bearer {token}"},
    ) as response:
        return response.status, dict(response.headers), await response.json()


async def wait_until(check: Any, *, timeout: float = 20.0, what: str = "condition") -> None:
    try:
        async with asyncio.timeout(timeout):
            while not await check():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"no {what} within {timeout} s") from None


async def test_the_21st_concurrent_job_is_429_and_creates_nothing(
    tmp_path: Path, backend: str
) -> None:
    """A's 20 jobs wait at Suno (the fake's clock stands still); the 21st runOnce is 429 with
    Retry-After and ``active: 20``, and the store holds no new job; B may still start one.
    When A's jobs finish (the fake's clock moves), A's next runOnce is 202 and succeeds.
    """
    assert DEFAULT_CAP == 20
    suno_clock = FakeClock()  # Suno's tasks move only when the test moves this clock
    async with running_stack(
        tmp_path,
        backend=backend,
        fake={"clock": suno_clock},
        service={"max_active_per_user": DEFAULT_CAP},
    ) as stack:
        jobs = [await stack.start(f"channel_{i:02d}") for i in range(DEFAULT_CAP)]
        for job in jobs:  # every one reached Suno and waits for it
            await stack.wait_for_stage(job, Stage.SUNO_TASK_CREATED)
        before = (await stack.store.count_active(), await stack.store.count_created(USER, EPOCH))

        status, headers, refused = await run_once_raw(stack, "channel_21")
        again, _, _ = await run_once_raw(stack, "channel_22")
        after = (await stack.store.count_active(), await stack.store.count_created(USER, EPOCH))
        tasks_while_capped = len(await stack.fake_tasks())

        # Another user's cap is their own.
        b_status, _, b_body = await run_once_raw(stack, "channel_b", OTHER_TOKEN)

        await suno_clock.advance(1.0)  # text, first and complete: every task succeeds
        await wait_until(lambda: _none_active(stack, USER), what="A's jobs finished", timeout=20)
        freed_status, _, freed = await run_once_raw(stack, "channel_21")
        await stack.wait_for_stage(freed["jobId"], Stage.SUNO_TASK_CREATED)
        await suno_clock.advance(1.0)
        freed_end = await stack.wait_for_stage(freed["jobId"], *DONE)

    assert status == 429 and again == 429
    assert refused["error"] == "TOO_MANY_ACTIVE_JOBS" and refused["success"] is False
    assert refused["active"] == DEFAULT_CAP
    assert "jobId" not in refused
    assert headers["Retry-After"] == str(ServiceConfig().too_many_retry_after_s)
    # Nothing was created or sent for the refused calls.
    assert before == (DEFAULT_CAP, DEFAULT_CAP) and after == before
    assert tasks_while_capped == DEFAULT_CAP
    assert b_status == 202, b_body
    # Freed: A starts again.
    assert freed_status == 202, freed
    assert freed_end["stage"] == Stage.SUNO_SUCCESS.value


async def _none_active(stack: Stack, user: str) -> bool:
    return await stack.store.count_active(user) == 0


async def test_credits_zero_then_top_up_then_run_out_mid_run(tmp_path: Path, backend: str) -> None:
    """0 credits: 402. Topped up, 3.5 s later: 202 and success (a cached 0 is asked again
    within 3 s). Credits gone while the cache still trusts a positive count: runOnce is 202,
    its generate gets 429 and the job fails with SUNO_NO_CREDITS; the next runOnce answers
    402 at once, without a credit check.
    """
    async with running_stack(tmp_path, backend=backend, fake={"credits": 0}) as stack:
        status_zero, _, zero = await run_once_raw(stack, "channel_1")

        await stack.configure_fake(credits=100)
        await asyncio.sleep(3.5)
        status_paid, _, paid = await run_once_raw(stack, "channel_2")
        paid_end = await stack.wait_for_stage(paid["jobId"], *DONE)

        await stack.configure_fake(credits=0)  # spent elsewhere; the cache still says 99
        status_mid, _, mid = await run_once_raw(stack, "channel_3")
        mid_end = await stack.wait_for_stage(mid["jobId"], *DONE)
        checks_before = stack.calls.codes("credit")
        status_next, _, refused = await run_once_raw(stack, "channel_4")
        checks_after = stack.calls.codes("credit")
        generate = stack.calls.codes("generate")
        refused_job = await stack.job(refused["jobId"])

    assert status_zero == 402 and zero["error"] == "SUNO_NO_CREDITS" and zero["credits"] == 0
    assert status_paid == 202, paid
    assert paid_end["stage"] == Stage.SUNO_SUCCESS.value
    assert status_mid == 202, mid
    assert mid_end["stage"] == Stage.FAILED.value and mid_end["errorCode"] == "SUNO_NO_CREDITS"
    assert status_next == 402 and refused["error"] == "SUNO_NO_CREDITS"
    assert refused_job["stage"] == Stage.FAILED.value
    assert checks_after == checks_before  # known from the 429: no credit call
    assert generate == {200: 1, 429: 1}


async def test_the_hourly_cap_answers_the_same_429_even_with_nothing_running(
    tmp_path: Path, backend: str
) -> None:
    """With ``CLIPJOBS_MAX_STARTS_PER_USER_PER_HOUR`` at 3, three jobs start and finish; the
    fourth runOnce in the hour is 429 ``TOO_MANY_ACTIVE_JOBS`` with Retry-After and ``active: 0``,
    and nothing is created. Another user's hour is their own.
    """
    async with running_stack(
        tmp_path,
        backend=backend,
        service={"max_active_per_user": 0, "max_starts_per_user_per_hour": 3},
    ) as stack:
        for i in range(3):
            job = await stack.start(f"channel_{i}")
            await stack.wait_for_stage(job, *DONE)
        before = await stack.store.count_created(USER, EPOCH)
        status, headers, refused = await run_once_raw(stack, "channel_3")
        after = await stack.store.count_created(USER, EPOCH)
        b_status, _, b_body = await run_once_raw(stack, "channel_b", OTHER_TOKEN)

    assert status == 429 and refused["error"] == "TOO_MANY_ACTIVE_JOBS"
    assert refused["active"] == 0 and "jobId" not in refused
    assert headers["Retry-After"] == str(ServiceConfig().too_many_retry_after_s)
    assert before == after == 3
    assert b_status == 202, b_body
