"""The background workers: sender, poller, sweeper and renderer (SPEC section 5).

Nothing lives only in memory. Each loop asks the store for due work
(``EventStore.claim``, under a lease), runs the service's one step for each
job with bounded concurrency, and releases the lease when the step is done.
So any number of processes share the work, and a restarted or killed one
loses nothing.

The sender and the poller make Suno calls, so they first wait for a turn of
the budget and only then claim the job at the head of the fair queue: a job
is never held (leased) while it waits, the queue is the store's (the same for
every process), and a step that runs is a call on its way to Suno. Shutting
down stops asking for turns at once and lets only the calls in flight finish.

Workers announce themselves in the store and beat every ``heartbeat_s``. A
worker whose heartbeat is older than three beats, or a process on this host
that no longer exists, is reaped: its leases are freed at once, so a restart
after ``kill -9`` resumes its jobs within seconds, not after ``lease_s``.

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
from collections.abc import Awaitable
from datetime import datetime, timedelta
from typing import Self

from attrs import field, frozen, validators

from ..domain.errors import ClipjobsError, ConfigError, JobNotFound, SunoTransient
from ..domain.stages import Work
from ..domain.state import JobState, SendState
from .logs import pipeline_log
from .ports import Priority, Slot, WorkerInfo
from .service import JobService

__all__ = ["LoopLimits", "WorkerConfig", "Workers"]

_positive = validators.gt(0)
_positive_s = validators.gt(0.0)

#: Work that makes a Suno call: it waits for a turn of the budget, then claims.
_BUDGETED = {Work.SEND: Priority.GENERATE, Work.POLL: Priority.POLL}
#: A heartbeat older than this many intervals means the worker is gone.
_MISSED_BEATS = 3


def _default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner(value: str | None) -> str:
    return value or _default_owner()


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it exists
    return True


@frozen
class LoopLimits:
    """How many jobs one loop claims at a time and runs at once."""

    batch: int = field(default=20, validator=_positive)
    concurrency: int = field(default=4, validator=_positive)


@frozen
class WorkerConfig:
    """How the workers of one process behave.

    ``owner`` names this process's leases and its entry in the workers
    registry; None (the default) means ``host:pid``. A restart after a crash
    finds its predecessor's entry, sees that its pid is gone, and frees its
    leases at once; a process that died elsewhere is found by its silence
    (``heartbeat_s`` × 3). ``lease_s`` is the upper bound for a live but
    silent worker, and must outlast the longest Suno call
    (``suno_call_timeout_s``): a send whose lease expired mid-call would be
    taken for a crashed one.
    """

    owner: str = field(default=None, converter=_owner, validator=validators.min_len(1))
    lease_s: float = field(default=60.0, validator=_positive_s)
    heartbeat_s: float = field(default=5.0, validator=_positive_s)
    suno_call_timeout_s: float = field(default=30.0, validator=_positive_s)
    error_backoff_s: float = field(default=15.0, validator=_positive_s)
    idle_s: float = field(default=1.0, validator=_positive_s)
    grace_s: float = field(default=10.0, validator=validators.ge(0.0))
    host: str = field(factory=socket.gethostname)
    pid: int = field(factory=os.getpid)
    send: LoopLimits = LoopLimits(batch=20, concurrency=4)
    poll: LoopLimits = LoopLimits(batch=50, concurrency=8)
    sweep: LoopLimits = LoopLimits(batch=100, concurrency=4)
    render: LoopLimits = LoopLimits(batch=4, concurrency=1)
    media: LoopLimits = LoopLimits(batch=10, concurrency=2)

    def __attrs_post_init__(self) -> None:
        if self.lease_s <= self.suno_call_timeout_s:
            raise ConfigError(
                f"worker lease_s={self.lease_s:g} must be longer than the Suno call timeout "
                f"({self.suno_call_timeout_s:g} s), or a slow send looks like a crashed one"
            )
        if self.heartbeat_s > self.lease_s:
            raise ConfigError(
                f"worker heartbeat_s={self.heartbeat_s:g} must not be longer than the lease"
                f" ({self.lease_s:g} s)"
            )

    def limits(self, work: Work) -> LoopLimits:
        return {
            Work.SEND: self.send,
            Work.POLL: self.poll,
            Work.SWEEP: self.sweep,
            Work.RENDER: self.render,
            Work.MEDIA: self.media,
        }[work]


class _Loop:
    """One kind of work: claim due jobs, run their step, release or hold the lease."""

    def __init__(self, work: Work, workers: Workers) -> None:
        self.work = work
        self.limits = workers.config.limits(work)
        self.w = workers
        self.running: dict[str, asyncio.Task[None]] = {}
        self.kicked = asyncio.Event()
        self.slot_freed = asyncio.Event()
        self.stopped = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.renewer: asyncio.Task[None] | None = None

    def start(self) -> None:
        body = self._run_budgeted() if self.work in _BUDGETED else self._run()
        self.task = asyncio.create_task(body, name=f"clipjobs-{self.work.value}")
        self.renewer = asyncio.create_task(self._renew(), name=f"clipjobs-{self.work.value}-leases")

    def stop(self) -> None:
        self.stopped.set()
        self.kicked.set()
        self.slot_freed.set()
        if self.work in _BUDGETED and self.task is not None:
            # It holds no lease while it waits for a turn: stop asking at once.
            self.task.cancel()

    async def _run(self) -> None:
        while not self.stopped.is_set():
            free = await self._free()
            if free <= 0:
                continue
            wanted = min(free, self.limits.batch)
            self.kicked.clear()
            jobs = await self._claim(wanted)
            for job in jobs:
                self._spawn(job, None)
            if len(jobs) < wanted:
                await self._idle()

    async def _run_budgeted(self) -> None:
        """Wait for a turn, then claim the job at the head of the queue, one at a time."""
        w = self.w
        priority = _BUDGETED[self.work]
        while not self.stopped.is_set():
            if await self._free() <= 0:
                continue
            self.kicked.clear()
            try:
                head = await w.store.queue(self.work, w.clock.now(), limit=1)
            except Exception as exc:  # the loop must outlive any one failure
                self._log_failure("queue read failed", exc, None)
                await self._idle()
                continue
            if not head:
                await self._idle()
                continue
            try:
                slot = await w.service.budget.acquire(priority)
            except SunoTransient:
                return  # the budget closed: the process is stopping
            except Exception as exc:
                self._log_failure("budget unavailable", exc, None)
                await self._idle()
                continue
            try:
                jobs = await self._claim(1)
            except asyncio.CancelledError:
                await asyncio.shield(w.service.budget.unused(slot))
                raise
            if not jobs:
                await w.service.budget.unused(slot)  # another process took it first
                continue
            self._spawn(jobs[0], slot)

    async def _free(self) -> int:
        """Free concurrency slots; waits for one (returning 0) when there are none."""
        free = self.limits.concurrency - len(self.running)
        if free <= 0:
            self.slot_freed.clear()
            await self.slot_freed.wait()
        return free

    async def _claim(self, limit: int) -> list[JobState]:
        w = self.w
        try:
            jobs = await w.store.claim(
                self.work,
                w.clock.now(),
                owner=w.config.owner,
                limit=limit,
                lease_s=w.config.lease_s,
            )
        except Exception as exc:  # the loop must outlive any one failure
            self._log_failure("claim failed", exc, None)
            await self._idle()
            return []
        if self.stopped.is_set():
            for job in jobs:
                await self._release(job)
            return []
        return [job for job in jobs if job.job_id not in self.running]

    def _spawn(self, job: JobState, slot: Slot | None) -> None:
        self.running[job.job_id] = asyncio.create_task(self._do(job, slot))

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

    def _step(self, job_id: str, slot: Slot | None) -> Awaitable[JobState]:
        service = self.w.service
        if self.work is Work.SEND:
            return service.send(job_id, slot)
        if self.work is Work.POLL:
            return service.poll(job_id, slot)
        if self.work is Work.SWEEP:
            return service.sweep(job_id)
        if self.work is Work.MEDIA:
            return service.keep_media(job_id)
        return service.render(job_id)

    async def _do(self, job: JobState, slot: Slot | None) -> None:
        w = self.w
        extra = _extra(job)
        try:
            await self._step(job.job_id, slot)
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

    ``async with Workers(service, config):`` registers this worker, frees what
    dead workers held, and starts the sender, the poller, the sweeper and
    (when the service has a post-processor) the renderer, (with a media keeper)
    the media copier; leaving the block,
    or :meth:`aclose`, stops them: no new Suno call is started, running steps
    get ``grace_s`` to finish, then are cancelled and their leases released.
    Everything else (store, clock, Suno budget) comes from the service.
    """

    def __init__(self, service: JobService, config: WorkerConfig | None = None) -> None:
        self.service = service
        self.store = service.store
        self.clock = service.clock
        self.config = config or WorkerConfig()
        self._loops: dict[Work, _Loop] = {}
        self._heart: asyncio.Task[None] | None = None
        self._started = False
        self._closing: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Register, reap dead workers, free this owner's old leases and start the loops (once)."""
        if self._started:
            return
        if self._closing is not None:
            raise RuntimeError("these workers were closed; make new ones")
        self._started = True
        await self.store.register_worker(self._info(self.clock.now()))
        await self.reap()
        freed = await self.store.release_owner(self.config.owner)
        if freed:
            pipeline_log.info(
                "worker %s: freed %d leases left by its previous run", self.config.owner, freed
            )
        works = [Work.SEND, Work.POLL, Work.SWEEP]
        if self.service.post_processor is not None:
            works.append(Work.RENDER)
        if self.service.media_keeper is not None:
            works.append(Work.MEDIA)
        for work in works:
            self._loops[work] = _Loop(work, self)
        self.service.on_commit.append(self._on_commit)
        for loop in self._loops.values():
            loop.start()
        self._heart = asyncio.create_task(self._beat(), name="clipjobs-heartbeat")
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

    def _info(self, now: datetime) -> WorkerInfo:
        c = self.config
        return WorkerInfo(c.owner, c.host, c.pid, now, now)

    async def reap(self) -> list[str]:
        """Forget workers that are gone and free their leases; the ids reaped.

        Gone: silent for three heartbeats, or a process of this host that no
        longer exists (a restart after ``kill -9`` frees its old self at once).
        """
        now = self.clock.now()
        silent = timedelta(seconds=self.config.heartbeat_s * _MISSED_BEATS)
        reaped = []
        for worker in await self.store.workers():
            if worker.worker_id == self.config.owner:
                continue
            if worker.host == self.config.host and not pid_alive(worker.pid):
                why = f"process {worker.pid} on this host is gone"
            elif now - worker.heartbeat_at > silent:
                why = f"silent since {worker.heartbeat_at.isoformat()}"
            else:
                continue
            freed = await self.store.reap_worker(worker.worker_id)
            reaped.append(worker.worker_id)
            pipeline_log.warning(
                "worker %s reaped (%s): freed %d leases", worker.worker_id, why, freed
            )
        return reaped

    async def _beat(self) -> None:
        while True:
            await self.clock.sleep(self.config.heartbeat_s)
            try:
                if not await self.store.heartbeat(self.config.owner, self.clock.now()):
                    # Reaped while alive (a long stall): announce ourselves again.
                    pipeline_log.warning(
                        "worker %s was reaped while running; registering again",
                        self.config.owner,
                    )
                    await self.store.register_worker(self._info(self.clock.now()))
                await self.reap()
            except Exception as exc:  # the next beat tries again
                pipeline_log.warning("worker heartbeat failed: %s: %s", type(exc).__name__, exc)

    def _on_commit(self, state: JobState) -> None:
        work = state.work
        if work in (Work.RENDER, Work.MEDIA) or (
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
        helpers = [loop.renewer for loop in loops if loop.renewer is not None]
        if self._heart is not None:
            helpers.append(self._heart)
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        if self._started:
            with contextlib.suppress(Exception):  # the registry forgets us: no one waits for us
                await self.store.reap_worker(self.config.owner)
            pipeline_log.info("workers %s stopped", self.config.owner)
