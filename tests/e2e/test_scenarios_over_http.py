"""Every Suno scenario end to end: SQLite file, real Suno client, fake Suno over HTTP, API, workers.

Each test starts jobs with ``runOnce`` over HTTP, lets the workers and the
fake's callbacks (to the real webhook) do their work, and then asserts on the
stored log (``store.read``), on what ``GET /jobs/{id}`` shows, and on what
the fake saw (``GET /_fake/tasks`` and the calls it answered). Tests taking
``backend`` run on PostgreSQL too when ``CLIPJOBS_TEST_PG_DSN`` is set.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from _stack import (
    CALLBACKS_ONLY,
    FAST_POLL,
    CallbackRelay,
    Stack,
    contiguous,
    event_types,
    never_down,
    running_stack,
    stage_numbers,
    terminal_events,
)

from clipjobs import FakeClock, JobPolicy, LateObservation, Priority, Stage
from clipjobs.domain.i18n import timeout_message
from clipjobs_aiohttp import ApiConfig

pytestmark = pytest.mark.asyncio

DONE = (Stage.SUNO_SUCCESS, Stage.FAILED, Stage.TIMEOUT)


def assert_success_body(body: dict[str, Any]) -> None:
    assert body["stage"] == Stage.SUNO_SUCCESS.value and body["done"] is True
    assert len(body["tracks"]) == 2
    assert all(t["audioUrl"] and t["audioUrl"].endswith(".mp3") for t in body["tracks"])
    assert body["audioUrl"] == body["tracks"][0]["audioUrl"]
    assert body["error"] is None and body["errorCode"] is None
    assert body["heartbeat"]["isStale"] is False


async def assert_clean_log(stack: Stack, job_id: str, terminal: str) -> list[str]:
    """The job's log: contiguous versions, stages never going down, one terminal event."""
    history = await stack.history(job_id)
    types = event_types(history)
    assert contiguous(history), [r.version for r in history]
    numbers = stage_numbers(history)
    assert never_down(numbers), list(zip(types, numbers, strict=True))
    assert terminal_events(history) == [terminal], types
    return types


async def test_callbacks_only(tmp_path: Path, backend: str) -> None:
    """With no poll ever due, the fake's text/first/complete callbacks alone take the job to
    STAGE_50 with two tracks, and GET never shows a stage going down.
    """
    async with running_stack(tmp_path, backend=backend, policy=CALLBACKS_ONLY) as stack:
        job_id = await stack.start()
        seen = await stack.watch(job_id)
        (task,) = await stack.fake_tasks()
        body = await stack.job(job_id)
        types = await assert_clean_log(stack, job_id, "SunoSucceeded")
        history = await stack.history(job_id)
        polls = stack.budget.started[Priority.POLL]

    assert_success_body(body)
    assert body["sunoTaskId"] == task["taskId"]
    assert body["version"] == len(history)
    numbers = [Stage(b["stage"]).number for b in seen]
    assert never_down(numbers) and numbers[-1] == 50, numbers
    versions = [b["version"] for b in seen]
    assert versions == sorted(set(versions))
    assert types[:3] == ["JobAccepted", "SunoRequestSent", "SunoTaskCreated"]
    assert types[3:] == ["SunoProgressObserved", "SunoProgressObserved", "SunoSucceeded"]
    assert all(r.event.source == "callback" for r in history[3:])  # type: ignore[union-attr]
    # The fake delivered each stage once and the webhook took each with 200.
    assert [(d["callbackType"], d["status"]) for d in task["deliveries"]] == [
        ("text", 200),
        ("first", 200),
        ("complete", 200),
    ]
    assert polls == 0
    assert stack.calls.codes("record-info") == Counter()


async def test_no_callbacks_poll_fallback_reaches_success(tmp_path: Path, backend: str) -> None:
    """When Suno never calls back, the poller's record-info calls take the job to STAGE_50."""
    async with running_stack(
        tmp_path, backend=backend, fake={"scenario": "no-callback"}, policy=FAST_POLL
    ) as stack:
        job_id = await stack.start()
        body = await stack.wait_for_stage(job_id, *DONE)
        (task,) = await stack.fake_tasks()
        types = await assert_clean_log(stack, job_id, "SunoSucceeded")
        history = await stack.history(job_id)
        record_info = stack.calls.codes("record-info")

    assert_success_body(body)
    assert task["deliveries"] == [] and task["scenario"] == "no-callback"
    assert types[:3] == ["JobAccepted", "SunoRequestSent", "SunoTaskCreated"]
    assert types[-1] == "SunoSucceeded"
    assert set(types[3:-1]) <= {"SunoProgressObserved"}
    assert all(r.event.source == "poll" for r in history[3:])  # type: ignore[union-attr]
    # Each observation is one record-info the fake answered (none failed).
    assert record_info[200] >= len(types) - 3 and set(record_info) == {200}


async def test_duplicated_shuffled_callbacks_racing_the_poller(
    tmp_path: Path, backend: str
) -> None:
    """Twelve jobs whose callbacks come twice from the fake and three times more, shuffled, from a
    relay, while the poller polls every 20 ms: each job records exactly one SunoSucceeded and one
    terminal event, and every other success is kept as a LateObservation.
    """
    relay = CallbackRelay("storm", copies=3, max_delay_s=0.3)
    racing = JobPolicy(timeout_s=120, poll_after_s=0.0, poll_interval_s=0.02)
    async with running_stack(
        tmp_path,
        backend=backend,
        fake={"scenario": "duplicate-callbacks"},
        policy=racing,
        relay=relay,
    ) as stack:
        jobs = [await stack.start(f"channel_{i}") for i in range(12)]
        bodies = [await stack.wait_for_stage(j, *DONE) for j in jobs]
        # Let every delivery and every shuffled copy land on the finished jobs.
        await stack.fake.settle()
        await relay.settle()
        await asyncio.sleep(0.1)
        histories = [await stack.history(j) for j in jobs]
        finals = [await stack.job(j) for j in jobs]
        per_job = await stack.tasks_per_job()
        polls = stack.budget.started[Priority.POLL]

    for body in finals:
        assert_success_body(body)
    assert all(b["version"] <= f["version"] for b, f in zip(bodies, finals, strict=True))
    assert per_job == Counter(dict.fromkeys(jobs, 1))
    # 3 stages x 2 copies from the fake, each relayed 3 times: all answered 200.
    assert len(relay.received) == 12 * 3 * 2
    assert len(relay.answers) == 12 * 3 * 2 * 3
    assert {status for status, _ in relay.answers} == {200}
    results = Counter(body["result"] for _, body in relay.answers)
    assert results["recorded"] >= 12 and results["late"] + results["duplicate"] > 0
    assert polls > 0  # the poller did race the callbacks
    for job_id, history in zip(jobs, histories, strict=True):
        types = event_types(history)
        assert contiguous(history)
        assert never_down(stage_numbers(history))
        assert types.count("SunoSucceeded") == 1, types
        assert terminal_events(history) == ["SunoSucceeded"], (job_id, types)
        succeeded = types.index("SunoSucceeded")
        # Nothing after the success moves the job: only late observations (identical replays
        # of one are counted as repeats, not copied).
        assert set(types[succeeded + 1 :]) <= {"LateObservation", "ObservationRepeated"}
        late = [r.event for r in history[succeeded + 1 :] if isinstance(r.event, LateObservation)]
        assert all(e.reason == "after_terminal" for e in late)
        assert len({e.key for e in late}) == len(late)  # no late observation stored twice


async def test_stuck_job_goes_stale_then_times_out_once_and_a_late_success_changes_nothing(
    tmp_path: Path, backend: str
) -> None:
    """A task Suno never finishes, with nobody polling it: GET shows the heartbeat stale, the
    sweeper times the job out exactly once with the seed's message, and a success callback after
    that is recorded as a LateObservation without changing the stage.
    """
    no_poll_3s = JobPolicy(timeout_s=3, poll_after_s=3600, poll_interval_s=3600)
    async with running_stack(
        tmp_path,
        backend=backend,
        fake={"scenario": "stuck"},
        policy=no_poll_3s,
        api=ApiConfig(stale_after_s=0.5),
    ) as stack:
        job_id = await stack.start()
        created = await stack.wait_for_stage(job_id, Stage.SUNO_TASK_CREATED)
        assert created["heartbeat"]["isStale"] is False
        stale = await stack.wait_for(
            job_id, lambda b: b["heartbeat"]["isStale"], what="a stale heartbeat"
        )
        timed_out = await stack.wait_for_stage(job_id, Stage.TIMEOUT)
        await asyncio.sleep(0.3)  # the sweeper keeps sweeping: nothing more may happen
        before_late = await stack.history(job_id)

        # Suno finishes after all: its complete callback reaches the real webhook.
        (task,) = await stack.fake_tasks()
        assert task["status"] == "PENDING" and task["deliveries"] == []
        callback = complete_callback(task["taskId"], stack.fake_url)
        url = stack.service.signer.callback_url(stack.url, job_id)
        async with stack.http.post(url, json=callback) as response:
            assert response.status == 200
            answer = await response.json()
        after = await stack.job(job_id)
        history = await stack.history(job_id)

    # While nobody observes it, the job says so (STAGE_30, no event for over 0.5 s).
    assert stale["stage"] == Stage.SUNO_TASK_CREATED.value
    assert stale["version"] == created["version"]
    assert stale["heartbeat"]["secondsSinceUpdate"] >= 1
    assert timed_out["errorCode"] == "JOB_TIMEOUT"
    assert timed_out["error"] == timeout_message(3, "ru", idle=True)
    assert timed_out["error"].startswith("Превышено время ожидания генерации (")
    assert timed_out["heartbeat"]["isStale"] is False and timed_out["done"] is True
    assert event_types(before_late).count("JobTimedOut") == 1
    assert event_types(before_late)[-1] == "JobTimedOut"

    assert answer["result"] == "late"
    assert after["stage"] == Stage.TIMEOUT.value and after["error"] == timed_out["error"]
    assert after["tracks"] == [] and after["audioUrl"] is None
    assert after["version"] == timed_out["version"] + 1
    assert contiguous(history) and never_down(stage_numbers(history))
    assert terminal_events(history) == ["JobTimedOut"]
    late = history[-1].event
    assert type(late).__name__ == "LateObservation"
    assert late.reason == "after_terminal" and late.status == "SUCCESS"  # type: ignore[union-attr]
    assert len(late.tracks) == 2  # type: ignore[union-attr]  # kept, not lost


async def test_stuck_job_polled_keeps_a_fresh_heartbeat_and_times_out_once(
    tmp_path: Path, backend: str
) -> None:
    """A task Suno keeps reporting PENDING: every poll is a heartbeat (GET never shows it stale),
    the sweeper times it out exactly once at its deadline, and nobody polls it after that.

    The clock is a fake one the test moves, so what is checked is what happens in which order
    (a loaded machine only makes it slower), not how fast.
    """
    clock = FakeClock()
    # Polls 8-12 s apart (10 s, jitter 20 %): two before the 30 s deadline, the third not due.
    # The age limit (max_s) is the deadline here: polls of an unchanged PENDING are no
    # progress, but the first one moved the job to STAGE_40, which would push an idle
    # timeout past the third poll.
    polled = JobPolicy(timeout_s=30, poll_after_s=10, poll_interval_s=10, max_s=30)
    async with running_stack(
        tmp_path,
        backend=backend,
        fake={"scenario": "stuck"},
        policy=polled,
        api=ApiConfig(stale_after_s=15),
        clock=clock,
    ) as stack:

        async def polls_seen(job: str, count: int) -> dict[str, Any]:
            await stack.wait_for_log(
                job,
                lambda types: types.count("SunoProgressObserved") >= count,
                what=f"{count} polls",
            )
            return await stack.job(job)

        job_id = await stack.start()
        seen = [await stack.wait_for_stage(job_id, Stage.SUNO_TASK_CREATED)]
        for count in (1, 2):
            await clock.advance(12)  # the next poll is due
            seen.append(await stack.job(job_id))  # before the poller came: 12 s, not stale
            seen.append(await polls_seen(job_id, count))
        await clock.advance(6)  # the deadline
        seen.append(await stack.wait_for_stage(job_id, Stage.TIMEOUT))
        await clock.advance(30)  # three polls' worth: due by now, were the job not done
        # Another job polled proves the poller has looked for due jobs since.
        other = await stack.start("channel_2")
        await stack.wait_for_stage(other, Stage.SUNO_TASK_CREATED)
        await clock.advance(12)
        await polls_seen(other, 1)
        polls = stack.calls.codes("record-info")
        types = await assert_clean_log(stack, job_id, "JobTimedOut")

    assert [b["heartbeat"]["isStale"] for b in seen] == [False] * len(seen)
    assert [b["heartbeat"]["secondsSinceUpdate"] for b in seen[:-1]] == [0, 12, 0, 12, 0]
    assert seen[-1]["error"] == timeout_message(30, "ru", age=True)
    assert types[3:] == ["SunoProgressObserved", "SunoProgressObserved", "JobTimedOut"]
    assert polls == Counter({200: 3})  # two for the stuck job, one for the other


def complete_callback(task_id: str, fake_url: str) -> dict[str, Any]:
    """Suno's ``complete`` callback body for ``task_id`` (snake_case tracks, as documented)."""
    tracks = [
        {
            "id": f"0000000{n}-0000-4000-8000-000000000000",
            "audio_url": f"{fake_url}/files/{task_id}/{n}.mp3",
            "stream_audio_url": f"{fake_url}/stream/{task_id}/{n}",
            "image_url": f"{fake_url}/files/{task_id}/{n}.jpeg",
            "title": f"Late song {n}",
            "duration": 3.0,
        }
        for n in (1, 2)
    ]
    return {
        "code": 200,
        "msg": "All generated successfully.",
        "data": {"callbackType": "complete", "task_id": task_id, "data": tracks},
    }


@pytest.mark.parametrize(
    ("scenario", "code"),
    [("generate-failed", "GENERATE_AUDIO_FAILED"), ("sensitive-word", "SENSITIVE_WORD_ERROR")],
)
@pytest.mark.parametrize("via", ["callback", "poll"])
async def test_failed_generation(tmp_path: Path, scenario: str, code: str, via: str) -> None:
    """A generation Suno fails ends in STAGE_90 with Suno's status as errorCode, whether its error
    callback arrives or (callbacks lost on the way) the poller reads it from record-info.
    """
    relay = CallbackRelay("drop") if via == "poll" else None
    policy = FAST_POLL if via == "poll" else CALLBACKS_ONLY
    async with running_stack(tmp_path, fake={"scenario": scenario}, policy=policy, relay=relay) as (
        stack
    ):
        job_id = await stack.start()
        body = await stack.wait_for_stage(job_id, *DONE)
        types = await assert_clean_log(stack, job_id, "JobFailed")
        history = await stack.history(job_id)
        (task,) = await stack.fake_tasks()
        record_info = stack.calls.codes("record-info")

    assert body["stage"] == Stage.FAILED.value and body["done"] is True
    assert body["errorCode"] == code
    assert code in body["error"]
    assert body["tracks"] == [] and body["audioUrl"] is None
    failed = history[-1].event
    assert types[-1] == "JobFailed" and failed.error_code == code  # type: ignore[union-attr]
    # JobFailed carries no source; what reached the service tells which path it took.
    if via == "poll":
        assert relay is not None and relay.received  # the fake did call back; nothing got through
        assert record_info[200] >= 1
    else:
        assert task["deliveries"][-1]["callbackType"] == "error"
        assert task["deliveries"][-1]["status"] == 200
        assert record_info == Counter()


async def test_no_credits_at_run_once(tmp_path: Path) -> None:
    """When Suno says 0 credits at the pre-flight, runOnce answers 402 SUNO_NO_CREDITS with the id
    of a job that failed at once, and nothing is sent to Suno.
    """
    async with running_stack(tmp_path, fake={"credits": 0}) as stack:
        status, refused = await stack.run_once()
        body = await stack.job(refused["jobId"])
        types = await assert_clean_log(stack, refused["jobId"], "JobFailed")
        tasks = await stack.fake_tasks()
        codes = stack.calls.codes()

    assert status == 402
    assert refused["error"] == "SUNO_NO_CREDITS" and refused["credits"] == 0
    assert refused["success"] is False
    assert body["stage"] == Stage.FAILED.value and body["done"] is True
    assert body["errorCode"] == "SUNO_NO_CREDITS"
    assert body["error"] == refused["message"]
    assert types == ["JobAccepted", "JobFailed"]
    assert tasks == [] and codes == Counter({200: 1})  # the one credit check


async def test_no_credits_found_by_the_generate_call(tmp_path: Path, backend: str) -> None:
    """With one credit left, two jobs are accepted (the pre-flight's answer is cached); the one
    whose generate call gets 429 fails with SUNO_NO_CREDITS without a retry, and the next runOnce
    answers 402 at once.
    """
    async with running_stack(tmp_path, backend=backend, fake={"credits": 1}) as stack:
        jobs = [await stack.start("channel_a"), await stack.start("channel_b")]
        bodies = {j: await stack.wait_for_stage(j, *DONE) for j in jobs}
        (failed,) = [j for j, b in bodies.items() if b["stage"] == Stage.FAILED.value]
        (succeeded,) = [j for j in jobs if j != failed]
        failed_types = await assert_clean_log(stack, failed, "JobFailed")
        status_after, refused_after = await stack.run_once("channel_c")
        per_job = await stack.tasks_per_job()
        generate = stack.calls.codes("generate")
        credit_checks = stack.calls.codes("credit")

    assert_success_body(bodies[succeeded])
    assert bodies[failed]["errorCode"] == "SUNO_NO_CREDITS" and bodies[failed]["done"] is True
    assert failed_types == ["JobAccepted", "SunoRequestSent", "JobFailed"]
    assert status_after == 402 and refused_after["error"] == "SUNO_NO_CREDITS"
    assert per_job == Counter({succeeded: 1})
    assert generate == Counter({200: 1, 429: 1})
    assert credit_checks == Counter({200: 1})  # cached, and then known from the 429


async def saturate(stack: Stack, jobs: int) -> list[dict[str, Any]]:
    """Start ``jobs`` jobs whose polls want far more calls than the budget allows; their ends."""
    started = [await stack.start(f"channel_{i}") for i in range(jobs)]
    return [await stack.wait_for_stage(j, *DONE, timeout=30) for j in started]


#: No callbacks, polls every 20 ms: eight jobs want ~400 calls a second.
SATURATING = JobPolicy(timeout_s=120, poll_after_s=0.02, poll_interval_s=0.02)


async def test_rate_limited_within_budget_the_fake_never_refuses(tmp_path: Path) -> None:
    """With the budget at 10 calls per 0.5 s and Suno allowing 10 per 0.45 s (a margin for the
    calls' travel time), the fake never answers 430, its log never shows more than 10 calls in any
    0.45 s, the budget did make calls wait, and every job finishes, each sent once.
    """
    async with running_stack(
        tmp_path,
        fake={"scenario": "no-callback", "rate_limit": 10, "rate_window_s": 0.45},
        policy=SATURATING,
        max_rps=20.0,
        window_s=0.5,
    ) as stack:
        bodies = await saturate(stack, 8)
        per_job = await stack.tasks_per_job()
        budget_peak = stack.budget.peak()
        waited = stack.budget.history
        slowdowns = stack.budget.slowdowns
        calls = stack.calls

    for body in bodies:
        assert_success_body(body)
    assert sorted(per_job.values()) == [1] * 8
    assert 430 not in calls.codes() and slowdowns == 0
    assert calls.peak(0.45) <= 10
    assert budget_peak <= 10
    # The budget did bind: calls had to wait for their turn, and more than one window was used.
    assert any(r.started_at > r.queued_at for r in waited)
    assert len(calls.calls) > 10


async def test_rate_limited_over_budget_slows_down_and_finishes(tmp_path: Path) -> None:
    """With the budget four times Suno's limit, the fake answers 430s; the budget pauses and halves
    its rate, and every job still finishes, each sent to Suno exactly once.
    """
    async with running_stack(
        tmp_path,
        fake={"scenario": "no-callback", "rate_limit": 5, "rate_window_s": 0.5},
        policy=SATURATING,
        max_rps=40.0,
        window_s=0.5,
        service={"send_max_attempts": 20},
    ) as stack:
        jobs = [await stack.start(f"channel_{i}") for i in range(6)]
        bodies = [await stack.wait_for_stage(j, *DONE, timeout=30) for j in jobs]
        per_job = await stack.tasks_per_job()
        slowdowns = stack.budget.slowdowns
        codes = stack.calls.codes()
        histories = [await stack.history(j) for j in jobs]

    for body in bodies:
        assert_success_body(body)
    assert per_job == Counter(dict.fromkeys(jobs, 1))
    assert codes[430] > 0 and slowdowns >= 1
    for history in histories:
        assert contiguous(history) and terminal_events(history) == ["SunoSucceeded"]


async def test_rate_limited_scenario_then_recovery(tmp_path: Path) -> None:
    """While the fake answers 430 to everything the jobs wait (retries scheduled, nothing failed);
    once it stops, they finish.
    """
    async with running_stack(
        tmp_path,
        fake={"scenario": "rate-limited"},
        max_rps=100.0,
        window_s=0.2,
        service={"send_max_attempts": 50},
    ) as stack:
        jobs = [await stack.start(f"channel_{i}") for i in range(3)]
        for job_id in jobs:
            await stack.wait_for_log(
                job_id,
                lambda types: "SunoRequestRetryScheduled" in types,
                what="a send refused with 430",
            )
        waiting = [await stack.job(j) for j in jobs]
        await stack.configure_fake(scenario="success")
        bodies = [await stack.wait_for_stage(j, *DONE, timeout=30) for j in jobs]
        per_job = await stack.tasks_per_job()
        slowdowns = stack.budget.slowdowns
        histories = [await stack.history(j) for j in jobs]

    assert all(b["stage"] == Stage.SUNO_REQUEST_SENT.value for b in waiting)
    for body in bodies:
        assert_success_body(body)
    assert slowdowns >= 1
    assert per_job == Counter(dict.fromkeys(jobs, 1))
    for history in histories:
        types = event_types(history)
        assert "SunoRequestRetryScheduled" in types
        assert types.count("SunoRequestSent") == types.count("SunoRequestRetryScheduled") + 1
        assert contiguous(history) and terminal_events(history) == ["SunoSucceeded"]


@pytest.mark.parametrize(("scenario", "code"), [("server-error", 500), ("maintenance", 455)])
async def test_server_errors_are_retried_then_succeed(
    tmp_path: Path, scenario: str, code: int
) -> None:
    """Suno's code 500 (or 455, maintenance) to the generate call is retried with backoff; once
    Suno recovers the job is sent (once) and succeeds.
    """
    async with running_stack(
        tmp_path,
        fake={"scenario": scenario},
        service={"send_max_attempts": 20},
    ) as stack:
        job_id = await stack.start()
        await stack.wait_for_log(
            job_id,
            lambda types: types.count("SunoRequestRetryScheduled") >= 2,
            what="two refused sends",
        )
        await stack.configure_fake(scenario="success")
        body = await stack.wait_for_stage(job_id, *DONE)
        types = await assert_clean_log(stack, job_id, "SunoSucceeded")
        per_job = await stack.tasks_per_job()
        generate = stack.calls.codes("generate")

    assert_success_body(body)
    retries = types.count("SunoRequestRetryScheduled")
    assert retries >= 2
    assert types.count("SunoRequestSent") == retries + 1
    assert generate[code] == retries and generate[200] == 1
    assert per_job == Counter({job_id: 1})


async def test_server_errors_while_polling_then_success(tmp_path: Path) -> None:
    """Polls answered 500 record nothing (the heartbeat does not move); when Suno recovers the
    poller takes the job to STAGE_50.
    """
    async with running_stack(
        tmp_path, fake={"scenario": "no-callback", "complete_after_s": 2.0}, policy=FAST_POLL
    ) as stack:
        job_id = await stack.start()
        await stack.wait_for_stage(job_id, Stage.SUNO_PENDING)
        await stack.configure_fake(scenario="server-error")
        frozen = await stack.job(job_id)
        failed_before = stack.calls.codes("record-info")[500]
        async with asyncio.timeout(10):
            while stack.calls.codes("record-info")[500] < failed_before + 3:
                await asyncio.sleep(0.02)
        during = await stack.job(job_id)
        await stack.configure_fake(scenario="success")
        body = await stack.wait_for_stage(job_id, *DONE)
        await assert_clean_log(stack, job_id, "SunoSucceeded")

    # Three failed polls later the job has not moved (one poll answered before the switch
    # may still have been landing), and it is not done.
    assert during["version"] <= frozen["version"] + 1
    assert during["stage"] == Stage.SUNO_PENDING.value and not during["done"]
    assert_success_body(body)


async def test_server_errors_until_the_sender_gives_up(tmp_path: Path) -> None:
    """Suno answering 500 to every attempt fails the job with SUNO_UNAVAILABLE after
    send_max_attempts, having created nothing at Suno.
    """
    async with running_stack(
        tmp_path, fake={"scenario": "server-error"}, service={"send_max_attempts": 3}
    ) as stack:
        job_id = await stack.start()
        body = await stack.wait_for_stage(job_id, *DONE)
        types = await assert_clean_log(stack, job_id, "JobFailed")
        tasks = await stack.fake_tasks()
        generate = stack.calls.codes("generate")

    assert body["stage"] == Stage.FAILED.value and body["errorCode"] == "SUNO_UNAVAILABLE"
    assert "3 attempts" in body["error"]
    assert types == [
        "JobAccepted",
        "SunoRequestSent",
        "SunoRequestRetryScheduled",
        "SunoRequestSent",
        "SunoRequestRetryScheduled",
        "SunoRequestSent",
        "JobFailed",
    ]
    assert tasks == [] and generate == Counter({500: 3})
