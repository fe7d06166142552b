"""The background workers: sender, poller, sweeper and renderer (SPEC section 5).

Nothing lives only in memory. Each loop asks the store for due work
(``EventStore.claim``: oldest due first, under a lease), runs the service's
one step for each job with bounded concurrency, and releases the lease when
the step is done. So any number of processes share the work, and a restarted
or killed one loses nothing: its leases expire (or, with a stable owner id,
are dropped at once when it starts again) and someone else takes the jobs.

A step that fails keeps its lease for ``error_backoff_s``: the job waits that
long before anyone tries again, which spaces retries across all processes.
Leases of running steps are renewed, so a slow step is never handed to a
second worker while the first is alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Self

from attrs import field, frozen, validators

from .budget import SunoBudget
from .errors import ClipjobsError, ConfigError, JobNotFound
from .logs import pipeline_log
from .ports import Clock, EventStore
from .service import JobService
from .stages import Work
from .state import JobState, SendState

__all__ = ["LoopLimits", "WorkerConfig", "Workers"]

_positive = validators.gt(0)
_positive_s = validators.gt(0.0)


def _default_owner() -> str:
    # Stable across restarts only where the pid is (a container's pid 1);
    # elsewhere set CLIPJOBS_WORKER_ID, or old leases wait out their expiry.
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner(value: str | None) -> str:
    return value or _default_owner()


@frozen
class LoopLimits:
    """How many jobs one loop claims at a time and runs at once."""

    batch: int = field(default=20, validator=_positive)
    concurrency: int = field(default=4, validator=_positive)


@frozen
class WorkerConfig:
    """How the workers of one process behave.

    ``owner`` names this process's leases; give each process its own, stable
    across its restarts (``CLIPJOBS_WORKER_ID``), and a restart frees the
    leases its previous life held. None (the default) means ``host:pid``.
    ``lease_s`` must outlast the longest Suno call (``suno_call_timeout_s``,
    the Suno client's generate timeout): a send whose lease expired mid-call
    would be taken for a crashed one.
    """

    owner: str = field(default=None, converter=_owner, validator=validators.min_len(1))
    lease_s: float = field(default=60.0, validator=_positive_s)
    suno_call_timeout_s: float = field(default=30.0, validator=_positive_s)
    error_backoff_s: float = field(default=15.0, validator=_positive_s)
    idle_s: float = field(default=1.0, validator=_positive_s)
    grace_s: float = field(default=10.0, validator=validators.ge(0.0))
    send: LoopLimits = LoopLimits(batch=20, concurrency=4)
    poll: LoopLimits = LoopLimits(batch=50, concurrency=8)
    sweep: LoopLimits = LoopLimits(batch=100, concurrency=4)
    render: LoopLimits = LoopLimits(batch=4, concurrency=1)

    def __attrs_post_init__(self) -> None:
        if self.lease_s <= self.suno_call_timeout_s:
            raise ConfigError(
                f"worker lease_s={self.lease_s:g} must be longer than the Suno call timeout "
                f"({self.suno_call_timeout_s:g} s), or a slow send looks like a crashed one"
            )

    def limits(self, work: Work) -> LoopLimits:
        return {
            Work.SEND: self.send,
            Work.POLL: self.poll,
            Work.SWEEP: self.sweep,
            Work.RENDER: self.render,
        }[work]


class _Loop:
    """One kind of work: claim due jobs, run their step, release or hold the lease."""

    def __init__(
        self,
        work: Work,
        step: Callable[[str], Awaitable[JobState]],
        workers: Workers,
    ) -> None:
        self.work = work
        self.step = step
        self.limits = workers.config.limits(work)
        self.w = workers
        self.running: dict[str, asyncio.Task[None]] = {}
        self.kicked = asyncio.Event()
        self.slot_freed = asyncio.Event()
        self.stopped = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.renewer: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"clipjobs-{self.work.value}")
        self.renewer = asyncio.create_task(self._renew(), name=f"clipjobs-{self.work.value}-leases")

    def stop(self) -> None:
        self.stopped.set()
        self.kicked.set()
        self.slot_freed.set()

    async def _run(self) -> None:
        w = self.w
        while not self.stopped.is_set():
            free = self.limits.concurrency - len(self.running)
            if free <= 0:
                self.slot_freed.clear()
                await self.slot_freed.wait()
                continue
            wanted = min(free, self._batch())
            self.kicked.clear()
            try:
                jobs = await w.store.claim(
                    self.work,
                    w.clock.now(),
                    owner=w.config.owner,
                    limit=wanted,
                    lease_s=w.config.lease_s,
                )
            except Exception as exc:  # the loop must outlive any one failure
                self._log_failure("claim failed", exc, None)
                await self._idle()
                continue
            for job in jobs:
                if self.stopped.is_set():
                    await self._release(job)
                elif job.job_id not in self.running:
                    self.running[job.job_id] = asyncio.create_task(self._do(job))
            if len(jobs) < wanted:
                await self._idle()

    def _batch(self) -> int:
        if self.work is Work.POLL:
            # Claim no more polls than the budget can start soon: a job held
            # waiting for the budget is a job nobody else can poll.
            return max(1, min(self.limits.batch, self.w.budget.headroom()))
        return self.limits.batch

    async def _idle(self) -> None:
        """Sleep ``idle_s``, or less if someone kicks this loop."""
        if self.stopped.is_set() or self.kicked.is_set():
            return
        sleep = asyncio.ensure_future(self.w.clock.sleep(self.w.config.idle_s))
        kick = asyncio.ensure_future(self.kicked.wait())
        try:
            await asyncio.wait((sleep, kick), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for fut in (sleep, kick):
                fut.cancel()
            await asyncio.gather(sleep, kick, return_exceptions=True)

    async def _do(self, job: JobState) -> None:
        w = self.w
        extra = _extra(job)
        try:
            await self.step(job.job_id)
        except asyncio.CancelledError:
            # Shutting down: let another worker (or our next life) take it now.
            await self._release(job)
            raise
        except JobNotFound:
            await self._release(job)
        except Exception as exc:
            w.service.metrics.inc(
                "clipjobs_worker_steps_total", work=self.work.value, result="error"
            )
            self._log_failure(f"{self.work.value} failed", exc, job)
            await self._hold(job)
        else:
            w.service.metrics.inc("clipjobs_worker_steps_total", work=self.work.value, result="ok")
            pipeline_log.debug("[%s] %s done", job.job_id, self.work.value, extra=extra)
            await self._release(job)
        finally:
            self.running.pop(job.job_id, None)
            self.slot_freed.set()

    def _log_failure(self, what: str, exc: BaseException, job: JobState | None) -> None:
        extra = _extra(job) if job is not None else {}
        prefix = f"[{job.job_id}] " if job is not None else ""
        if isinstance(exc, ClipjobsError):
            # Expected trouble (Suno or the database said no): one line, no traceback.
            pipeline_log.warning("%s%s: %s: %s", prefix, what, type(exc).__name__, exc, extra=extra)
        else:
            pipeline_log.error("%s%s", prefix, what, exc_info=exc, extra=extra)

    async def _release(self, job: JobState) -> None:
        try:
            await self.w.store.release(job.job_id, self.work, owner=self.w.config.owner)
        except Exception as exc:  # the lease expires by itself; the loop goes on
            self._log_failure("lease release failed", exc, job)

    async def _hold(self, job: JobState) -> None:
        """Keep the lease for ``error_backoff_s`` so the job waits before the next try."""
        w = self.w
        try:
            await w.store.renew(
                job.job_id,
                self.work,
                w.clock.now(),
                owner=w.config.owner,
                lease_s=w.config.error_backoff_s,
            )
        except Exception as exc:  # the lease expires by itself; the loop goes on
            self._log_failure("lease hold failed", exc, job)

    async def _renew(self) -> None:
        w = self.w
        every = w.config.lease_s / 3
        while True:
            await w.clock.sleep(every)
            for job_id in list(self.running):
                try:
                    kept = await w.store.renew(
                        job_id,
                        self.work,
                        w.clock.now(),
                        owner=w.config.owner,
                        lease_s=w.config.lease_s,
                    )
                except Exception as exc:  # retried at the next round, well before expiry
                    pipeline_log.warning(
                        "[%s] lease renewal failed: %s", job_id, exc, extra={"job_id": job_id}
                    )
                    continue
                if not kept and job_id in self.running:  # not just finished meanwhile
                    pipeline_log.warning(
                        "[%s] %s lease lost while the step runs (the process stalled "
                        "longer than lease_s?)",
                        job_id,
                        self.work.value,
                        extra={"job_id": job_id},
                    )


def _extra(job: JobState) -> dict[str, str]:
    return {"job_id": job.job_id, "stage": job.stage.value, "request_id": job.request_id}


class Workers:
    """The background loops of one process, as an ``async with`` resource.

    ``async with Workers(service, store, budget, clock, config):`` starts the
    sender, the poller, the sweeper and (when the service has a post-processor)
    the renderer; leaving the block, or :meth:`aclose`, stops them: running
    steps get ``grace_s`` to finish, then are cancelled and their leases released.
    ``service.suno`` should be a :class:`~clipjobs.budget.BudgetedSuno` over
    ``budget`` so that every Suno call of the process shares it.
    """

    def __init__(
        self,
        service: JobService,
        store: EventStore,
        budget: SunoBudget,
        clock: Clock,
        config: WorkerConfig | None = None,
    ) -> None:
        self.service = service
        self.store = store
        self.budget = budget
        self.clock = clock
        self.config = config or WorkerConfig()
        self._loops: dict[Work, _Loop] = {}
        self._started = False
        self._closing: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Free this owner's old leases and start the loops (once)."""
        if self._started:
            return
        if self._closing is not None:
            raise RuntimeError("these workers were closed; make new ones")
        self._started = True
        freed = await self.store.release_owner(self.config.owner)
        if freed:
            pipeline_log.info(
                "worker %s: freed %d leases left by its previous run", self.config.owner, freed
            )
        steps: dict[Work, Callable[[str], Awaitable[JobState]]] = {
            Work.SEND: self.service.send,
            Work.POLL: self.service.poll,
            Work.SWEEP: self.service.sweep,
        }
        if self.service.post_processor is not None:
            steps[Work.RENDER] = self.service.render
        for work, step in steps.items():
            self._loops[work] = _Loop(work, step, self)
        self.service.on_commit.append(self._on_commit)
        for loop in self._loops.values():
            loop.start()
        pipeline_log.info(
            "workers started as %s: %s", self.config.owner, ", ".join(w.value for w in self._loops)
        )

    def kick(self, work: Work = Work.SEND) -> None:
        """Wake a loop now instead of after its idle interval (new work is due)."""
        loop = self._loops.get(work)
        if loop is not None:
            loop.kicked.set()

    def running(self) -> dict[Work, int]:
        """How many steps each loop is running now."""
        return {work: len(loop.running) for work, loop in self._loops.items()}

    def _on_commit(self, state: JobState) -> None:
        work = state.work
        if work is Work.RENDER or (
            work is Work.SEND and state.send_state is not SendState.IN_FLIGHT
        ):
            due = state.due_at
            if due is not None and due <= self.clock.now():
                self.kick(work)

    async def aclose(self) -> None:
        """Stop claiming, let running steps finish within ``grace_s``, then cancel; idempotent."""
        if self._closing is None:
            self._closing = asyncio.create_task(self._close())
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        with contextlib.suppress(ValueError):
            self.service.on_commit.remove(self._on_commit)
        loops = list(self._loops.values())
        for loop in loops:
            loop.stop()
        # A loop still inside a claim releases what it got instead of starting it.
        tasks = [loop.task for loop in loops if loop.task is not None]
        tasks += [task for loop in loops for task in loop.running.values()]
        if tasks:
            grace = asyncio.ensure_future(self.clock.sleep(self.config.grace_s))
            all_done = asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.wait((grace, all_done), return_when=asyncio.FIRST_COMPLETED)
            grace.cancel()
            left = [task for task in tasks if not task.done()]
            if left:
                pipeline_log.warning(
                    "workers %s: cancelling %d tasks still running after %g s",
                    self.config.owner,
                    len(left),
                    self.config.grace_s,
                )
            for task in left:
                task.cancel()
            await asyncio.gather(all_done, grace, return_exceptions=True)
        renewers = [loop.renewer for loop in loops if loop.renewer is not None]
        for task in renewers:
            task.cancel()
        await asyncio.gather(*renewers, return_exceptions=True)
        if self._started:
            pipeline_log.info("workers %s stopped", self.config.owner)
