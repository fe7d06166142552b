"""Sends, crashes and callbacks of a first and a second Suno task, interleaved at random.

A generate call may come back, reach Suno and lose its answer (the sender died after), or die
before it reaches Suno. The recovery marks a call found in flight uncertain, the resend sends
an uncertain call once more after its delay, and callbacks of either task arrive in any order.
Whatever the interleaving: at most one ``SunoSucceeded``, at most two generate calls that
reached Suno, a contiguous log, and once every task Suno made has called back ``complete``,
the job is done.
"""

from __future__ import annotations

import asyncio
from typing import Any

from _core_harness import make_service
from hypothesis import event, example, given, settings, target
from hypothesis import strategies as st

from clipjobs import (
    GenerationParams,
    JobPolicy,
    JobRequest,
    ProviderStatus,
    Stage,
    SunoSucceeded,
)
from clipjobs.testing import ScriptedSuno


class CrashingSuno(ScriptedSuno):
    """Each generate does what the script says: answer, lose its answer, or never arrive."""

    def __init__(self) -> None:
        super().__init__()
        self.modes: list[str] = []
        self.tasks: list[str] = []  # every task Suno created, answered or not

    async def generate(self, params: GenerationParams, callback_url: str) -> str:
        mode = self.modes.pop(0) if self.modes else "answer"
        if mode == "never_arrives":
            raise asyncio.CancelledError  # the process died before the request left
        task_id = await super().generate(params, callback_url)
        self.tasks.append(task_id)
        if mode == "answer_lost":
            raise asyncio.CancelledError  # Suno made the task; the process died before the answer
        return task_id


_SEND = st.tuples(st.just("send"), st.sampled_from(["answer", "answer_lost", "never_arrives"]))
_CRASHED_SEND = st.tuples(st.just("send"), st.sampled_from(["answer_lost", "never_arrives"]))
_ADVANCE = st.tuples(st.just("advance"), st.sampled_from([1, 30, 61, 200]))
_CALLBACK = st.tuples(
    st.just("callback"),
    st.integers(0, 1),
    st.sampled_from([ProviderStatus.TEXT_SUCCESS, ProviderStatus.SUCCESS]),
)
#: Crashed sends, time passing and more sends are common, so the resend path (a second
#: Suno task) and its races with the first task's callbacks are reached often.
STEPS = st.lists(
    st.one_of(
        _SEND, _CRASHED_SEND, _CRASHED_SEND, _ADVANCE, _ADVANCE, _CALLBACK, st.just(("sweep",))
    ),
    min_size=1,
    max_size=16,
)


async def _run(steps: list[tuple[Any, ...]]) -> None:
    service, store, suno, clock = make_service(
        CrashingSuno(), policy=JobPolicy(timeout_s=600, resend_uncertain_after_s=60)
    )
    job = (await service.start_job(JobRequest("ch", "u1"))).job
    token = service.signer.token(job.job_id)

    async def callback(task_id: str, status: ProviderStatus) -> None:
        await service.handle_callback(job.job_id, token, suno.callback(task_id, status))

    for step in steps:
        match step:
            case ("send", mode):
                suno.modes.append(mode)
                try:
                    await service.send(job.job_id)
                except asyncio.CancelledError:
                    event("a send died mid-call")
            case ("advance", seconds):
                await clock.advance(seconds)
            case ("callback", index, status) if index < len(suno.tasks):
                await callback(suno.tasks[index], status)
            case ("sweep",):
                await service.sweep(job.job_id)
        log = await store.read(job.job_id)
        assert [r.version for r in log] == list(range(1, len(log) + 1))
        assert sum(isinstance(r.event, SunoSucceeded) for r in log) <= 1
        assert len(suno.tasks) <= 2

    # Suno calls back every task it made, in any order: the job cannot stay unfinished.
    target(len(suno.tasks), label="Suno tasks")
    for task_id in reversed(suno.tasks):
        await callback(task_id, ProviderStatus.SUCCESS)
    final = await store.load(job.job_id)
    assert final is not None
    event(f"ended {final.stage.value}, {len(suno.tasks)} Suno task(s)")
    if suno.tasks:
        assert final.done, (steps, final)
        if final.stage is not Stage.TIMEOUT:
            assert final.stage is Stage.SUNO_SUCCESS and final.task_id in suno.tasks
    log = await store.read(job.job_id)
    assert sum(isinstance(r.event, SunoSucceeded) for r in log) <= 1
    await service.aclose()


@settings(max_examples=300, deadline=None)
@given(STEPS)
@example(  # answers lost twice, each found in flight and resent after the delay
    [
        ("send", "answer_lost"),
        ("send", "answer"),
        ("advance", 61),
        ("send", "answer_lost"),
        ("send", "answer"),
        ("advance", 61),
        ("send", "answer"),
        ("callback", 1, ProviderStatus.SUCCESS),
    ]
)
def test_interleaved_sends_crashes_and_callbacks_never_make_two_successes(
    steps: list[tuple[Any, ...]],
) -> None:
    """At most one success and two Suno tasks, and no job stuck once callbacks come."""
    asyncio.run(_run(steps))
