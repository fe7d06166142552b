"""What the worker tests share: a service on the in-memory store, fakes, and waiting."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from clipjobs import (
    ChannelDefaults,
    InMemoryEventStore,
    JobPolicy,
    JobRequest,
    JobService,
    JobState,
    ProviderStatus,
    SendState,
    ServiceConfig,
    SunoBudget,
    SystemClock,
    WebhookSigner,
    WorkerConfig,
    Workers,
)
from clipjobs.domain.events import GenerationParams, Observation
from clipjobs.testing import ScriptedSuno

#: Polls a few times a second, so the poll fallback shows in well under a second.
FAST = JobPolicy(timeout_s=60, poll_after_s=0.05, poll_interval_s=0.05)
#: Never polls within a test: only callbacks move the job.
NO_POLL = JobPolicy(timeout_s=60, poll_after_s=3600, poll_interval_s=3600)


def worker_config(owner: str = "w1", **changes: Any) -> WorkerConfig:
    settings: dict[str, Any] = {
        "owner": owner,
        "lease_s": 1.0,
        "heartbeat_s": 0.2,
        "suno_call_timeout_s": 0.5,
        "error_backoff_s": 0.05,
        "idle_s": 0.02,
        "grace_s": 0.5,
        **changes,
    }
    return WorkerConfig(**settings)


class ProgressingSuno(ScriptedSuno):
    """ScriptedSuno whose tasks move one step along ``path`` at each record-info."""

    def __init__(
        self,
        path: tuple[ProviderStatus, ...] = (
            ProviderStatus.PENDING,
            ProviderStatus.TEXT_SUCCESS,
            ProviderStatus.FIRST_SUCCESS,
            ProviderStatus.SUCCESS,
        ),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.path = path
        self.poll_delay = 0.0
        self.active_polls: set[str] = set()
        self.active_sends: set[str] = set()
        self.overlaps: list[str] = []

    async def generate(self, params: GenerationParams, callback_url: str) -> str:
        if callback_url in self.active_sends:
            self.overlaps.append(callback_url)
        self.active_sends.add(callback_url)
        try:
            task_id = await super().generate(params, callback_url)
        finally:
            self.active_sends.discard(callback_url)
        self.statuses[task_id] = self.path[0]
        return task_id

    async def record_info(self, task_id: str) -> Observation:
        if task_id in self.active_polls:
            self.overlaps.append(task_id)
        self.active_polls.add(task_id)
        try:
            if self.poll_delay:
                await asyncio.sleep(self.poll_delay)
            observation = await super().record_info(task_id)
        finally:
            self.active_polls.discard(task_id)
        current = self.statuses.get(task_id)
        if current in self.path:
            self.statuses[task_id] = self.path[
                min(self.path.index(current) + 1, len(self.path) - 1)
            ]
        return observation


class Rig:
    """One "process": a service with a budgeted Suno, over a shared store."""

    def __init__(
        self,
        store: InMemoryEventStore,
        suno: ScriptedSuno,
        *,
        policy: JobPolicy = FAST,
        max_rps: float = 1000.0,
        window_s: float = 1.0,
        **config: Any,
    ) -> None:
        self.store = store
        self.inner = suno
        self.clock = SystemClock()
        self.budget = SunoBudget(max_rps, clock=self.clock, window_s=window_s)
        settings: dict[str, Any] = {
            "callback_base_url": "https://clips.example",
            "policy": policy,
            "send_backoff_s": 0.02,
            "send_backoff_max_s": 0.1,
            "max_active_per_user": 0,  # the worker tests start many jobs for one user
            **config,
        }
        self.service = JobService(
            store,
            suno,
            ChannelDefaults(),
            WebhookSigner("secret-for-worker-tests"),
            clock=self.clock,
            config=ServiceConfig(**settings),
            budget=self.budget,
        )

    def workers(self, owner: str = "w1", **changes: Any) -> Workers:
        return Workers(self.service, worker_config(owner, **changes))

    async def start(self, channel: str = "channel_1") -> JobState:
        return (await self.service.start_job(JobRequest(channel, "u1"))).job

    async def callback(self, job_id: str, task_id: str, status: ProviderStatus) -> Any:
        token = self.service.signer.token(job_id)
        return await self.service.handle_callback(
            job_id, token, self.inner.callback(task_id, status)
        )

    async def aclose(self) -> None:
        await self.budget.aclose()


async def wait_until(
    check: Callable[[], Any], *, timeout: float = 10.0, what: str = "condition"
) -> None:
    """Wait (in real time) until ``await check()`` (or ``check()``) is truthy."""
    async with asyncio.timeout(timeout):
        while True:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return
            await asyncio.sleep(0.01)


async def wait_for_state(
    store: InMemoryEventStore, job_id: str, test: Callable[[JobState], bool], what: str
) -> JobState:
    """The job once ``test`` holds for its state."""
    found: list[JobState] = []

    async def check() -> bool:
        state = await store.load(job_id)
        if state is not None and test(state):
            found.append(state)
            return True
        return False

    await wait_until(check, what=f"{job_id}: {what}")
    return found[-1]


async def wait_for_stage(store: InMemoryEventStore, job_id: str, *stages: Any) -> JobState:
    """The job once it is in one of ``stages``."""
    return await wait_for_state(store, job_id, lambda s: s.stage in stages, f"in {stages}")


async def wait_for_send_state(
    store: InMemoryEventStore, job_id: str, send_state: SendState
) -> JobState:
    """The job once its send is in ``send_state``."""
    return await wait_for_state(
        store, job_id, lambda s: s.send_state is send_state, f"send {send_state}"
    )


def event_types(records: list[Any]) -> list[str]:
    return [type(r.event).__name__ for r in records]


def contiguous(records: list[Any]) -> bool:
    return [r.version for r in records] == list(range(1, len(records) + 1))
