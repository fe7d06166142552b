"""Crashes, restarts and several worker processes on one store: nothing lost, nothing doubled."""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
from datetime import timedelta

import pytest
from _workers_harness import (
    NO_POLL,
    ProgressingSuno,
    Rig,
    contiguous,
    event_types,
    wait_for_send_state,
    wait_for_stage,
    wait_until,
)

from clipjobs import (
    ClipStep,
    InMemoryEventStore,
    JobPolicy,
    JobState,
    LoopLimits,
    ProviderStatus,
    SendState,
    Stage,
    Work,
    WorkerConfig,
    WorkerInfo,
)
from clipjobs.app.ports import StepReporter
from clipjobs.domain.errors import ConfigError, StoreUnavailable
from clipjobs.domain.events import GenerationParams, Observation

pytestmark = pytest.mark.asyncio


class SuspendedSuno(ProgressingSuno):
    """Suno receives the generate request (and creates the task), but the answer never comes."""

    async def generate(self, params: GenerationParams, callback_url: str) -> str:
        await super().generate(params, callback_url)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def die_mid_send(dead: Rig, job_id: str) -> None:
    """The dead process: it leased the job, recorded STAGE_20, sent (Suno made the task) and
    died waiting for the answer.
    """
    await dead.store.claim(Work.SEND, dead.clock.now(), owner="dead", limit=1, lease_s=0.3)
    crashed = asyncio.create_task(dead.service.send(job_id))
    await wait_until(lambda: len(dead.inner.generated) == 1, what="the request reaches Suno")
    crashed.cancel()
    await asyncio.gather(crashed, return_exceptions=True)


async def test_a_send_left_in_flight_by_a_crash_is_not_resent_and_a_callback_adopts_it() -> None:
    """A job a dead sender left IN_FLIGHT becomes uncertain, is not sent again before the resend
    delay, and its task's callback adopts it.
    """
    store = InMemoryEventStore()
    suno = SuspendedSuno()
    dead = Rig(store, suno, policy=NO_POLL)
    job = await dead.start()
    await die_mid_send(dead, job.job_id)
    in_flight = await store.load(job.job_id)
    assert in_flight is not None
    assert (in_flight.stage, in_flight.send_state) == (Stage.SUNO_REQUEST_SENT, SendState.IN_FLIGHT)

    alive = Rig(store, ProgressingSuno(), policy=NO_POLL)
    async with alive.workers("alive"):
        uncertain = await wait_for_send_state(store, job.job_id, SendState.UNCERTAIN)
        assert uncertain.stage is Stage.SUNO_REQUEST_SENT
        # Sent again only if no callback names the job within the resend delay (120 s).
        assert uncertain.uncertain_since is not None
        assert uncertain.due_at == uncertain.uncertain_since + timedelta(seconds=120)
        await asyncio.sleep(0.1)
        # Suno did create the task: its callback names the job and adopts the task.
        (_, _, task_id) = suno.generated[0]
        await alive.callback(job.job_id, task_id, ProviderStatus.FIRST_SUCCESS)
        await alive.callback(job.job_id, task_id, ProviderStatus.SUCCESS)
        done = await wait_for_stage(store, job.job_id, Stage.SUNO_SUCCESS)
    assert done.task_id == task_id
    assert len(suno.generated) == 1
    assert alive.inner.generated == []
    types = event_types(await store.read(job.job_id))
    assert types == [
        "JobAccepted",
        "SunoRequestSent",
        "SunoRequestUncertain",
        "SunoTaskCreated",
        "SunoProgressObserved",
        "SunoSucceeded",
    ]
    await dead.aclose()
    await alive.aclose()


async def test_an_uncertain_send_without_a_callback_is_resent_once() -> None:
    """An uncertain send that no callback names within the resend delay is sent again (attempt
    2, its reason recorded), its task wins, and the first task's late callback changes nothing:
    one success, two Suno tasks at most.
    """
    store = InMemoryEventStore()
    suno = SuspendedSuno()
    policy = JobPolicy(
        timeout_s=60, poll_after_s=3600, poll_interval_s=3600, resend_uncertain_after_s=0.3
    )
    dead = Rig(store, suno, policy=policy)
    job = await dead.start()
    await die_mid_send(dead, job.job_id)

    alive = Rig(store, ProgressingSuno(), policy=policy)
    async with alive.workers("alive"):
        await wait_for_send_state(store, job.job_id, SendState.UNCERTAIN)
        resent = await wait_for_stage(store, job.job_id, Stage.SUNO_TASK_CREATED)
        (_, _, second_task) = alive.inner.generated[0]
        assert resent.task_id == second_task and resent.resends == 1
        await alive.callback(job.job_id, second_task, ProviderStatus.SUCCESS)
        await wait_for_stage(store, job.job_id, Stage.SUNO_SUCCESS)
        # The first task's callback comes after all: recorded, changing nothing.
        (_, _, first_task) = suno.generated[0]
        await alive.callback(job.job_id, first_task, ProviderStatus.SUCCESS)
    assert len(suno.generated) + len(alive.inner.generated) == 2
    records = await store.read(job.job_id)
    assert event_types(records) == [
        "JobAccepted",
        "SunoRequestSent",
        "SunoRequestUncertain",
        "SunoRequestSent",
        "SunoTaskCreated",
        "SunoSucceeded",
        "LateObservation",
    ]
    assert "no callback named the job" in (records[3].event.reason or "")
    assert contiguous(records)
    await dead.aclose()
    await alive.aclose()


async def test_lease_expiry_hands_a_dead_workers_jobs_to_another() -> None:
    """Jobs leased by a worker that died are polled by another only after the lease expires."""
    store = InMemoryEventStore()
    suno = ProgressingSuno()
    rig = Rig(store, suno, policy=JobPolicy(timeout_s=60, poll_after_s=0.0, poll_interval_s=0.05))
    jobs = [await rig.start(f"channel_{i}") for i in range(5)]
    for job in jobs:
        await rig.service.send(job.job_id)
    claimed_at = rig.clock.now()
    taken = await store.claim(Work.POLL, claimed_at, owner="dead", limit=5, lease_s=0.4)
    assert len(taken) == 5
    expires = claimed_at + timedelta(seconds=0.4)
    async with rig.workers("heir"):
        for job in jobs:
            await wait_for_stage(store, job.job_id, Stage.SUNO_SUCCESS)
    first_polls = [r.started_at for r in rig.budget.history if r.priority.name == "POLL"][:5]
    assert len(first_polls) == 5
    assert min(first_polls) >= expires
    await rig.aclose()


async def test_a_restart_with_the_same_owner_frees_its_leases_at_once() -> None:
    """A worker restarted under its old owner id takes its jobs back without waiting out leases."""
    store = InMemoryEventStore()
    suno = ProgressingSuno()
    rig = Rig(store, suno, policy=JobPolicy(timeout_s=60, poll_after_s=0.0, poll_interval_s=0.05))
    job = await rig.start()
    await rig.service.send(job.job_id)
    await store.claim(Work.POLL, rig.clock.now(), owner="host:42", limit=1, lease_s=3600)
    async with rig.workers("host:42"):
        await wait_for_stage(store, job.job_id, Stage.SUNO_SUCCESS)
    await rig.aclose()


def _dead_pid() -> int:
    """The pid of a process of this host that has exited (and been reaped)."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


async def test_a_restart_frees_the_dead_process_s_leases_at_once() -> None:
    """A worker of this host whose process is gone is reaped when another starts: its jobs
    move at once, long before their 60 s leases would run out.
    """
    store = InMemoryEventStore()
    rig = Rig(
        store,
        ProgressingSuno(),
        policy=JobPolicy(timeout_s=60, poll_after_s=0.0, poll_interval_s=0.05),
    )
    jobs = [await rig.start(f"channel_{i}") for i in range(3)]
    now = rig.clock.now()
    dead = WorkerInfo(
        f"{socket.gethostname()}:{_dead_pid()}", socket.gethostname(), _dead_pid(), now, now
    )
    await store.register_worker(dead)
    taken = await store.claim(Work.SEND, now, owner=dead.worker_id, limit=10, lease_s=60)
    assert len(taken) == 3
    async with rig.workers("restarted", lease_s=60.0, heartbeat_s=5.0):
        for job in jobs:
            await wait_for_stage(store, job.job_id, Stage.SUNO_SUCCESS)
        assert rig.clock.now() - now < timedelta(seconds=10)
        assert [w.worker_id for w in await store.workers()] == ["restarted"]
    await rig.aclose()


async def test_a_silent_worker_is_reaped_after_three_heartbeats() -> None:
    """A worker elsewhere that stops beating is reaped after three intervals and its jobs move;
    a live one that was reaped (a long stall) registers again at its next beat.
    """
    store = InMemoryEventStore()
    rig = Rig(
        store,
        ProgressingSuno(),
        policy=JobPolicy(timeout_s=60, poll_after_s=0.0, poll_interval_s=0.05),
    )
    job = await rig.start()
    now = rig.clock.now()
    silent = WorkerInfo("elsewhere:1", "another-host", 1, now, now)
    await store.register_worker(silent)
    await store.claim(Work.SEND, now, owner=silent.worker_id, limit=10, lease_s=60)
    async with rig.workers("alive", heartbeat_s=0.1) as workers:
        await wait_for_stage(store, job.job_id, Stage.SUNO_SUCCESS)
        assert rig.clock.now() - now >= timedelta(seconds=0.3)
        assert silent.worker_id not in {w.worker_id for w in await store.workers()}
        # This worker stalled long enough to be reaped by someone: it comes back by itself.
        await store.reap_worker("alive")
        await wait_until(lambda: _registered(store, "alive"), what="the worker registers again")
        assert workers.config.owner == "alive"
    await rig.aclose()


async def _registered(store: InMemoryEventStore, worker_id: str) -> bool:
    return worker_id in {w.worker_id for w in await store.workers()}


async def test_heartbeat_must_fit_in_the_lease() -> None:
    """A heartbeat interval longer than the lease, or not positive, is a configuration error."""
    with pytest.raises(ConfigError, match="heartbeat_s"):
        WorkerConfig(lease_s=40.0, suno_call_timeout_s=30.0, heartbeat_s=41.0)
    with pytest.raises(ValueError, match="heartbeat_s"):
        WorkerConfig(heartbeat_s=0.0)


async def test_two_worker_processes_never_run_the_same_step_at_once() -> None:
    """Two Workers on one store share 40 jobs: each is sent once, no send or poll overlaps, all
    succeed.
    """
    store = InMemoryEventStore()
    suno = ProgressingSuno()
    suno.generate_delay = 0.01
    suno.poll_delay = 0.01
    policy = JobPolicy(timeout_s=60, poll_after_s=0.0, poll_interval_s=0.0)
    first = Rig(store, suno, policy=policy)
    second = Rig(store, suno, policy=policy)
    many = LoopLimits(batch=10, concurrency=10)
    async with first.workers("a", send=many, poll=many), second.workers("b", send=many, poll=many):
        jobs = [await (first if i % 2 else second).start(f"channel_{i}") for i in range(40)]
        for job in jobs:
            await wait_for_stage(store, job.job_id, Stage.SUNO_SUCCESS)
    assert suno.overlaps == []
    assert len(suno.generated) == 40
    assert len({url for _, url, _ in suno.generated}) == 40
    for job in jobs:
        history = await store.read(job.job_id)
        assert contiguous(history)
        assert event_types(history).count("SunoSucceeded") == 1
    # Both processes did some of the work.
    assert sum(first.budget.started.values()) > 0 and sum(second.budget.started.values()) > 0
    await first.aclose()
    await second.aclose()


class Renderer:
    """A post-processor that walks the steps and returns a clip URL."""

    def __init__(self) -> None:
        self.rendered: list[str] = []

    async def process(self, job: JobState, report: StepReporter) -> str:
        await report(ClipStep.DOWNLOADING)
        await report(ClipStep.RENDERING)
        self.rendered.append(job.job_id)
        return f"/media/{job.job_id}.mp4"


async def test_the_renderer_loop_turns_success_into_a_clip() -> None:
    """With a post-processor, a job that reaches STAGE_50 is rendered to STAGE_70 by the renderer
    loop.
    """
    store = InMemoryEventStore()
    suno = ProgressingSuno(path=(ProviderStatus.SUCCESS,))
    policy = JobPolicy(timeout_s=60, poll_after_s=0.0, poll_interval_s=0.05, clip_render=True)
    rig = Rig(store, suno, policy=policy)
    renderer = Renderer()
    rig.service.post_processor = renderer
    workers = rig.workers()
    async with workers:
        assert set(workers.running()) == {Work.SEND, Work.POLL, Work.SWEEP, Work.RENDER}
        job = await rig.start()
        ready = await wait_for_stage(store, job.job_id, Stage.CLIP_READY)
    assert ready.clip_url == f"/media/{job.job_id}.mp4"
    assert renderer.rendered == [job.job_id]
    await rig.aclose()


async def test_closing_waits_for_a_running_step_then_cancels_and_releases_it() -> None:
    """aclose gives running steps the grace period, then cancels them and frees their leases; twice
    is fine.
    """
    store = InMemoryEventStore()
    suno = SuspendedSuno()
    rig = Rig(store, suno, policy=NO_POLL)
    workers = rig.workers(grace_s=0.1)
    await workers.start()
    job = await rig.start()
    await wait_until(lambda: len(suno.generated) == 1)
    assert workers.running()[Work.SEND] == 1
    await asyncio.gather(workers.aclose(), workers.aclose())
    await workers.aclose()
    assert workers.running()[Work.SEND] == 0
    # The lease is free: another worker can take the job at once (and finds it in flight).
    taken = await store.claim(Work.SEND, rig.clock.now(), owner="next", limit=1, lease_s=1)
    assert [s.job_id for s in taken] == [job.job_id]
    assert taken[0].send_state is SendState.IN_FLIGHT
    await rig.aclose()


async def test_closed_workers_cannot_start_again() -> None:
    """Workers are one-shot: starting closed ones is a programming error."""
    rig = Rig(InMemoryEventStore(), ProgressingSuno())
    workers = rig.workers()
    await workers.aclose()
    with pytest.raises(RuntimeError):
        await workers.start()
    await rig.aclose()


async def test_a_failing_on_commit_hook_does_not_undo_the_commit() -> None:
    """An on_commit listener that raises is logged; the job is created all the same."""
    store = InMemoryEventStore()
    rig = Rig(store, ProgressingSuno())

    def broken(state: JobState) -> None:
        raise RuntimeError("listener bug")

    rig.service.on_commit.append(broken)
    job = await rig.start()
    assert await store.load(job.job_id) == job
    await rig.aclose()


async def test_worker_lease_must_outlast_the_suno_call() -> None:
    """A lease no longer than the Suno call timeout is refused at configuration time."""
    with pytest.raises(ConfigError, match="lease_s"):
        WorkerConfig(owner="w", lease_s=30, suno_call_timeout_s=30)
    assert WorkerConfig().owner == WorkerConfig(owner=None).owner  # host:pid by default
    assert ":" in WorkerConfig().owner
    with pytest.raises(ValueError, match="batch"):
        LoopLimits(batch=0)


class FlakyStore(InMemoryEventStore):
    """An in-memory store whose claims fail a few times and whose renewals report lost leases."""

    def __init__(self) -> None:
        super().__init__()
        self.claim_failures = 0
        self.lose_leases = False

    async def claim(self, work, now, *, owner, limit, lease_s):  # type: ignore[no-untyped-def]
        if self.claim_failures > 0:
            self.claim_failures -= 1
            raise StoreUnavailable("database is locked")
        return await super().claim(work, now, owner=owner, limit=limit, lease_s=lease_s)

    async def renew(self, job_id, work, now, *, owner, lease_s):  # type: ignore[no-untyped-def]
        if self.lose_leases:
            return False
        return await super().renew(job_id, work, now, owner=owner, lease_s=lease_s)


class BuggySuno(ProgressingSuno):
    """A Suno client with a bug: its first record-info raises a non-clipjobs exception, slowly."""

    async def record_info(self, task_id: str) -> Observation:
        if not self.polled:
            self.polled.append(task_id)
            await asyncio.sleep(0.2)
            raise KeyError("a bug in a client")
        return await super().record_info(task_id)


async def test_loops_outlive_database_errors_bugs_and_lost_leases(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Failed claims, a step that hits a bug and a lost lease are logged; the job still finishes."""
    store = FlakyStore()
    store.claim_failures = 3
    store.lose_leases = True
    suno = BuggySuno()
    rig = Rig(store, suno)
    with caplog.at_level(logging.WARNING, logger="clipjobs.pipeline"):
        async with rig.workers(lease_s=0.3, suno_call_timeout_s=0.1):
            job = await rig.start()
            await wait_for_stage(store, job.job_id, Stage.SUNO_SUCCESS)
    messages = [r.getMessage() for r in caplog.records]
    assert any("claim failed: StoreUnavailable: database is locked" in m for m in messages)
    bug = next(r for r in caplog.records if "poll failed" in r.getMessage())
    assert bug.levelname == "ERROR" and bug.exc_info is not None  # a bug gets its traceback
    assert any("lease lost while the step runs" in m for m in messages)
    await rig.aclose()
