"""A hypothesis state machine driving JobService and the in-memory store at random."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from clipjobs import (
    ChannelDefaults,
    FakeClock,
    InMemoryEventStore,
    JobFailed,
    JobPolicy,
    JobRequest,
    JobService,
    JobTimedOut,
    ProviderStatus,
    ServiceConfig,
    SunoSucceeded,
    WebhookSigner,
    fold,
)
from clipjobs.errors import SunoTransient
from clipjobs.service import Unauthorized
from clipjobs.testing import ScriptedSuno


class JobLifecycle(RuleBasedStateMachine):
    """Random interleavings of starts, sends, callbacks, polls, sweeps and time."""

    jobs = Bundle("jobs")

    @initialize()
    def setup(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.suno = ScriptedSuno()
        self.clock = FakeClock()
        self.store = InMemoryEventStore()
        self.service = JobService(
            self.store,
            self.suno,
            ChannelDefaults(),
            WebhookSigner("state-machine-secret"),
            clock=self.clock,
            config=ServiceConfig(
                callback_base_url="https://clips.example",
                one_job_per_channel=False,
                policy=JobPolicy(timeout_s=300),
            ),
        )
        self.seen_stage: dict[str, int] = {}

    def teardown(self) -> None:
        self.loop.run_until_complete(self.store.aclose())
        self.loop.close()

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    @rule(target=jobs, channel=st.sampled_from(["a", "b"]))
    def start(self, channel: str) -> str:
        return str(self.run(self.service.start_job(JobRequest(channel, "u1"))).job.job_id)

    @rule(job=jobs, transient=st.booleans())
    def send(self, job: str, transient: bool) -> None:
        if transient:
            self.suno.generate_errors.append(SunoTransient("503", code=503))
        self.run(self.service.send(job))

    @rule(
        job=jobs,
        status=st.sampled_from(ProviderStatus),
        copies=st.integers(1, 3),
        forged=st.booleans(),
    )
    def callback(self, job: str, status: ProviderStatus, copies: int, forged: bool) -> None:
        state = self.run(self.store.load(job))
        task = state.task_id or f"adopted-{job}"
        token = "f" * 32 if forged else self.service.signer.token(job)
        for _ in range(copies):
            try:
                self.run(self.service.handle_callback(job, token, self.suno.callback(task, status)))
            except Unauthorized:
                assert forged

    @rule(job=jobs, status=st.sampled_from(ProviderStatus))
    def poll(self, job: str, status: ProviderStatus) -> None:
        state = self.run(self.store.load(job))
        if state.task_id is not None:
            self.suno.statuses[state.task_id] = status
            self.run(self.service.poll(job))

    @rule(job=jobs)
    def sweep(self, job: str) -> None:
        self.run(self.service.sweep(job))

    @rule(seconds=st.integers(1, 200))
    def time_passes(self, seconds: int) -> None:
        self.run(self.clock.advance(seconds))

    @precondition(lambda self: hasattr(self, "store"))
    @invariant()
    def logs_are_sound(self) -> None:
        for job_id in list(self.store._jobs):
            log = self.run(self.store.read(job_id))
            events = [r.event for r in log]
            assert [r.version for r in log] == list(range(1, len(log) + 1))
            assert sum(isinstance(e, JobFailed | JobTimedOut) for e in events) <= 1
            assert sum(isinstance(e, SunoSucceeded) for e in events) <= 1
            state = self.run(self.store.load(job_id))
            assert state == fold(events)
            assert state.stage.number >= self.seen_stage.get(job_id, 0)
            self.seen_stage[job_id] = state.stage.number


JobLifecycle.TestCase.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)
TestJobLifecycle = JobLifecycle.TestCase
