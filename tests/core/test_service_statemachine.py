"""A hypothesis state machine driving JobService and the in-memory store at random.

Each job gets a story at its start (what Suno will say about its task: some
progress, then success most often, or a failure), and the rules play it out
in any interleaving: sends that fail, may have reached Suno or crash mid-call,
Suno telling the story by callback or poll, replaying what it already said
(duplicated, out of order, after the end, or forged), post-processing that
works or fails, sweeps, time passing, and the clock going backwards. Run with
``--hypothesis-show-statistics`` to see what the jobs reached.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import event, settings
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
    GenerationParams,
    InMemoryEventStore,
    JobFailed,
    JobPolicy,
    JobRequest,
    JobService,
    JobState,
    JobTimedOut,
    LateObservation,
    ProviderStatus,
    SendState,
    ServiceConfig,
    Stage,
    SunoSucceeded,
    WebhookSigner,
    fold,
)
from clipjobs.app.budget import SunoBudget
from clipjobs.app.ports import StepReporter
from clipjobs.app.service import Unauthorized
from clipjobs.domain.errors import PostProcessError, SunoTransient
from clipjobs.domain.events import ClipStep, SunoRequestUncertain
from clipjobs.testing import ScriptedSuno

P = ProviderStatus
TIMEOUT_S = 300
#: How much time passes in a step: mostly moments, now and then past every deadline.
MOMENTS = st.sampled_from([1, 5, 10, 30, 60] * 4 + [2 * TIMEOUT_S])
#: What Suno will say about a job's task, in its order (chosen when the job starts):
#: success three times in four.
STORIES = [
    [P.SUCCESS],
    [P.FIRST_SUCCESS, P.SUCCESS],
    [P.TEXT_SUCCESS, P.FIRST_SUCCESS, P.SUCCESS],
    [P.PENDING, P.TEXT_SUCCESS, P.FIRST_SUCCESS, P.SUCCESS],
] * 3 + [
    [P.TEXT_SUCCESS, P.GENERATE_AUDIO_FAILED],
    [P.SENSITIVE_WORD_ERROR],
    [P.PENDING, P.FIRST_SUCCESS, P.CALLBACK_EXCEPTION],
    [P.PENDING, P.TEXT_SUCCESS],  # Suno never finishes: only a timeout ends it
]


class HangingSuno(ScriptedSuno):
    """The scripted Suno, whose next generate call can hang as if its caller's process died."""

    def __init__(self) -> None:
        super().__init__(credits=10**6)
        self.hang_next = False
        self.entered = asyncio.Event()

    async def generate(self, params: GenerationParams, callback_url: str) -> str:
        if self.hang_next:
            self.hang_next = False
            self.entered.set()
            await asyncio.Event().wait()  # until the test cancels the send
        return await super().generate(params, callback_url)


class Renderer:
    """A post-processor that reports its steps and fails when told to."""

    def __init__(self) -> None:
        self.fail_next = False

    async def process(self, job: JobState, report: StepReporter) -> str:
        await report(ClipStep.DOWNLOADING)
        if self.fail_next:
            self.fail_next = False
            raise PostProcessError("CLIP_FAILED", "the renderer gave up")
        await report(ClipStep.RENDERING)
        return f"/media/{job.job_id}.mp4"


class JobLifecycle(RuleBasedStateMachine):
    """Random interleavings of starts, sends, Suno's news, renders, sweeps and time."""

    jobs = Bundle("jobs")
    clips = st.booleans()
    stories = st.sampled_from(STORIES)
    troubles = st.sampled_from([None] * 4 + ["transient", "maybe_sent", "crash"])

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.suno = HangingSuno()
        self.clock = FakeClock()
        self.store = InMemoryEventStore()
        self.renderer = Renderer()
        # Two services on one store: jobs started with and without post-processing.
        self.services = {
            clip: JobService(
                self.store,
                self.suno,
                ChannelDefaults(),
                WebhookSigner("state-machine-secret"),
                clock=self.clock,
                config=ServiceConfig(
                    callback_base_url="https://clips.example",
                    one_job_per_channel=False,
                    max_active_per_user=0,
                    policy=JobPolicy(timeout_s=TIMEOUT_S, max_s=TIMEOUT_S, clip_render=clip),
                ),
                post_processor=self.renderer,
                # The rules call Suno far more than 20 times per fake 10 s:
                # no rate limit here, so a send never waits on the fake clock.
                budget=SunoBudget(max_rps=1e6, clock=self.clock, pacing=False),
            )
            for clip in (False, True)
        }
        self.service = self.services[True]
        self.seen_stage: dict[str, int] = {}
        self.story: dict[str, list[ProviderStatus]] = {}
        #: How much of its story Suno has told about each job.
        self.told: dict[str, int] = {}
        #: What goes wrong with a job's first send.
        self.trouble: dict[str, str] = {}

    def teardown(self) -> None:
        try:
            self.report("random steps")
            self.workers_finish_everything()
            self.report("after the workers finished")
        finally:
            self.run(self.store.aclose())
            self.loop.close()

    def workers_finish_everything(self) -> None:
        """Liveness: with the workers running and Suno telling the rest, every job ends.

        Busy moments until nothing changes, then the jobs' deadlines pass and the sweeper
        runs; the logs stay sound at every step.
        """
        for _ in range(20):
            before = {job: self.load(job).version for job in self.story}
            self.busy_moment(by_poll=False, echo=False, back=0)
            self.logs_are_sound()
            if before == {job: self.load(job).version for job in self.story}:
                break
        else:
            raise AssertionError("the jobs kept changing")
        # Past every deadline (the clock may have gone back since a job started).
        deadline = max(self.load(job).created_at for job in self.story) + timedelta(
            seconds=TIMEOUT_S + 1
        )
        self.run(self.clock.advance(max(0.0, (deadline - self.clock.now()).total_seconds())))
        self.busy_moment(by_poll=False, echo=False, back=0)
        self.logs_are_sound()
        unfinished = {job: self.load(job).stage for job in self.story if not self.load(job).done}
        assert unfinished == {}

    def report(self, when: str) -> None:
        """What the jobs reached (shown with --hypothesis-show-statistics)."""
        for job_id in self.story:
            state = self.load(job_id)
            log = [r.event for r in self.run(self.store.read(job_id))]
            event(f"{when}: a job ended in {state.stage.value}")
            if any(isinstance(e, SunoSucceeded) for e in log):
                event(f"{when}: a job succeeded")
            if any(isinstance(e, SunoRequestUncertain) for e in log):
                event(f"{when}: a job's send crashed or was uncertain")
            for reason in sorted({e.reason for e in log if isinstance(e, LateObservation)}):
                event(f"{when}: a job had a late observation: {reason}")

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def load(self, job: str) -> JobState:
        state = self.run(self.store.load(job))
        assert state is not None
        return state

    def task_of(self, state: JobState) -> str:
        """The job's task: the one recorded, or (a send that crashed) the one Suno made anyway."""
        return state.task_id or f"adopted-{state.job_id}"

    def start(self, clip: bool, story: list[ProviderStatus], trouble: str | None) -> str:
        """A new job, its story at Suno, and what will go wrong with its first send."""
        request = JobRequest("channel", "u1")
        job = str(self.run(self.services[clip].start_job(request)).job.job_id)
        self.story[job], self.told[job] = story, 0
        if trouble is not None:
            self.trouble[job] = trouble
        return job

    # Every run starts with two jobs, so no run is without any.
    @initialize(target=jobs, clip=clips, story=stories, trouble=troubles)
    def first_job(self, clip: bool, story: list[ProviderStatus], trouble: str | None) -> str:
        return self.start(clip, story, trouble)

    @initialize(target=jobs, clip=clips, story=stories, trouble=troubles)
    def second_job(self, clip: bool, story: list[ProviderStatus], trouble: str | None) -> str:
        return self.start(clip, story, trouble)

    @precondition(lambda self: len(self.story) < 4)
    @rule(target=jobs, clip=clips, story=stories, trouble=troubles)
    def another_job(self, clip: bool, story: list[ProviderStatus], trouble: str | None) -> str:
        return self.start(clip, story, trouble)

    def next_step(self, job: str, by_poll: bool) -> None:
        """Whatever comes next in the job's life: its send, Suno's next news, or its render."""
        state = self.load(job)
        if state.stage is Stage.REQUEST_ACCEPTED or state.send_state in (
            SendState.RETRY_WAIT,
            SendState.IN_FLIGHT,
        ):
            self.send(job, self.trouble.pop(job, None))
        elif state.stage is Stage.SUNO_SUCCESS and not state.done:
            self.run(self.service.render(job))
        elif self.told[job] < len(self.story[job]):
            status, task = self.story[job][self.told[job]], self.task_of(state)
            self.told[job] += 1
            if by_poll and state.task_id is not None:
                self.suno.statuses[task] = status
                self.run(self.service.poll(job))
            else:
                self.deliver(job, task, status)

    def deliver(self, job: str, task: str, status: ProviderStatus, copies: int = 1) -> None:
        body = self.suno.callback(task, status)
        for _ in range(copies):
            self.run(self.service.handle_callback(job, self.service.signer.token(job), body))

    def echo(self, job: str, back: int, copies: int = 1) -> None:
        """Suno delivers again what it said ``back`` messages ago (or its first, if fewer)."""
        told = self.told[job]
        if told:
            status = self.story[job][max(0, told - 1 - back)]
            self.deliver(job, self.task_of(self.load(job)), status, copies)

    @rule(job=jobs, by_poll=st.booleans())
    def a_job_moves_on(self, job: str, by_poll: bool) -> None:
        self.next_step(job, by_poll)

    def busy_moment(self, by_poll: bool, echo: bool, back: int) -> None:
        """The sweeper passes over every job, each takes its next step, and (``echo``) Suno
        delivers something it said before once more: duplicated, out of order, or late.
        """
        for job in list(self.story):
            self.run(self.service.sweep(job))
            self.next_step(job, by_poll)
            if echo:
                self.echo(job, back)

    @rule(
        by_poll=st.booleans(), echo=st.booleans(), back=st.integers(0, 2), rounds=st.integers(1, 3)
    )
    def every_job_moves_on(self, by_poll: bool, echo: bool, back: int, rounds: int) -> None:
        for _ in range(rounds):
            self.busy_moment(by_poll, echo, back)

    @rule(
        seconds=MOMENTS,
        by_poll=st.booleans(),
        echo=st.booleans(),
        back=st.integers(0, 2),
    )
    def time_passes(self, seconds: int, by_poll: bool, echo: bool, back: int) -> None:
        """Mostly moments, sometimes long enough to time jobs out; the workers keep working."""
        self.run(self.clock.advance(seconds))
        self.busy_moment(by_poll, echo, back)

    def send(self, job: str, trouble: str | None) -> None:
        """The sender's step; with ``trouble`` the generate call fails (``transient``), may have
        reached Suno (``maybe_sent``), or its process dies mid-call (``crash``: the job stays in
        flight, and its next send marks it uncertain instead of sending again).
        """
        state = self.load(job)
        calls_suno = state.stage is Stage.REQUEST_ACCEPTED or (
            state.stage is Stage.SUNO_REQUEST_SENT and state.send_state is SendState.RETRY_WAIT
        )
        if calls_suno and trouble == "crash":
            self.suno.hang_next = True
            sending = self.loop.create_task(self.service.send(job))
            self.run(self.suno.entered.wait())
            self.suno.entered.clear()
            sending.cancel()
            self.run(asyncio.gather(sending, return_exceptions=True))
            assert self.load(job).send_state is SendState.IN_FLIGHT
            return
        if calls_suno and trouble == "transient":
            self.suno.generate_errors.append(SunoTransient("503", code=503))
        elif calls_suno and trouble == "maybe_sent":
            self.suno.generate_errors.append(SunoTransient("timeout", maybe_sent=True))
        self.run(self.service.send(job))

    @rule(job=jobs, trouble=st.sampled_from(["transient", "maybe_sent", "crash"]))
    def a_send_goes_wrong(self, job: str, trouble: str) -> None:
        self.send(job, trouble)

    @rule(job=jobs, back=st.integers(0, 3), copies=st.integers(1, 3), forged=st.booleans())
    def suno_repeats(self, job: str, back: int, copies: int, forged: bool) -> None:
        """Suno delivers again something it already said, once or more. With a forged token
        each copy is refused and nothing is recorded.
        """
        if not forged:
            self.echo(job, back, copies)
            return
        state = self.load(job)
        body = self.suno.callback(self.task_of(state), ProviderStatus.SUCCESS)
        for _ in range(copies):
            with pytest.raises(Unauthorized):
                self.run(self.service.handle_callback(job, "f" * 32, body))
        assert self.load(job) == state

    @rule(job=jobs)
    def a_render_fails(self, job: str) -> None:
        """The renderer's step for a succeeded job that asked for a clip, and it fails."""
        state = self.load(job)
        if state.stage is Stage.SUNO_SUCCESS and not state.done:
            self.renderer.fail_next = True
            self.run(self.service.render(job))

    @rule(job=jobs)
    def sweep(self, job: str) -> None:
        self.run(self.service.sweep(job))

    @rule(seconds=MOMENTS)
    def time_passes_with_workers_down(self, seconds: int) -> None:
        self.run(self.clock.advance(seconds))

    @rule(seconds=st.integers(1, 120))
    def clock_goes_back(self, seconds: int) -> None:
        """Another process's clock, or NTP: the next command is issued earlier than the last."""
        self.run(self.clock.advance(-seconds))

    @invariant()
    def logs_are_sound(self) -> None:
        for job_id in list(self.store._jobs):
            log = self.run(self.store.read(job_id))
            events = [r.event for r in log]
            assert [r.version for r in log] == list(range(1, len(log) + 1))
            assert sum(isinstance(e, JobFailed | JobTimedOut) for e in events) <= 1
            assert sum(isinstance(e, SunoSucceeded) for e in events) <= 1
            state = self.load(job_id)
            assert state == fold(events)
            assert state.stage.number >= self.seen_stage.get(job_id, 0)
            self.seen_stage[job_id] = state.stage.number


JobLifecycle.TestCase.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)
TestJobLifecycle = JobLifecycle.TestCase
