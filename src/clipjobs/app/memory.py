"""An in-memory ``EventStore``: the reference implementation and a safe fake.

It passes the same ``EventStoreContract`` as the SQLite and PostgreSQL stores.
Every method does its work without awaiting in between, so each is atomic on
the event loop. Nothing survives the process.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Self

import attrs

from ..domain.errors import (
    ChannelBusy,
    ConcurrencyError,
    IdempotencyConflict,
    InvalidRequest,
    StoreUnavailable,
)
from ..domain.fleet import JobFilter, PageKey, before, matches
from ..domain.stages import Stage, Work
from ..domain.state import JobState
from ._fair import fair_order
from ._memory_notify import MemoryNotify
from .changes import ChangeFeed, ChangeNotifier
from .ports import Commit, Due, Lease, OrphanCallback, RecordedEvent, WorkerInfo

__all__ = ["InMemoryEventStore"]

#: Work handed out in the fair order (round-robin by user); the rest oldest first.
_FAIR = frozenset({Work.SEND, Work.POLL})


class InMemoryEventStore(MemoryNotify):
    def __init__(self) -> None:
        self._logs: dict[str, list[RecordedEvent]] = {}
        self._jobs: dict[str, JobState] = {}
        self._by_task: dict[str, str] = {}
        self._by_key: dict[tuple[str, str], str] = {}
        self._locks: dict[str, str] = {}
        self._leases: dict[tuple[str, Work], tuple[str, datetime]] = {}
        #: The number of the last hand-out of a user's job, per work (the fair queue's memory).
        self._served: dict[Work, dict[str, int]] = {work: {} for work in Work}
        self._handouts = 0
        self._workers: dict[str, WorkerInfo] = {}
        self._secrets: dict[str, str] = {}
        self._orphans: list[OrphanCallback] = []
        self._changes = ChangeNotifier()
        self._closed = False

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        self._changes.notify_all()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailable("the in-memory store is closed")

    async def append(self, commit: Commit) -> None:
        self._check_open()
        if not commit.events:
            raise InvalidRequest("a commit needs at least one event")
        job_id, expected = commit.job_id, commit.expected_version
        current = self._jobs.get(job_id)
        current_version = current.version if current is not None else 0
        if current_version != expected:
            raise ConcurrencyError(f"job {job_id} is at version {current_version}, not {expected}")
        state = commit.state
        if state.version != expected + len(commit.events) or state.job_id != job_id:
            raise InvalidRequest("the commit's state does not follow from its events")
        lock = state.channel_lock
        if lock is not None and self._locks.get(lock, job_id) != job_id:
            raise ChannelBusy(self._locks[lock])
        key = (state.user_id, state.idempotency_key) if state.idempotency_key else None
        if expected == 0 and key is not None and key in self._by_key:
            raise IdempotencyConflict(self._by_key[key])

        log = self._logs.setdefault(job_id, [])
        for offset, event in enumerate(commit.events, start=1):
            log.append(RecordedEvent(job_id, expected + offset, event))
        self._jobs[job_id] = state
        if state.task_id is not None:
            self._by_task.setdefault(state.task_id, job_id)
        if key is not None:
            self._by_key.setdefault(key, job_id)
        if current is not None and current.channel_lock and current.channel_lock != lock:
            self._locks.pop(current.channel_lock, None)
        if lock is not None:
            self._locks[lock] = job_id
        self._enqueue_notifications(commit)
        self._changes.notify(job_id)

    async def load(self, job_id: str) -> JobState | None:
        self._check_open()
        return self._jobs.get(job_id)

    async def read(self, job_id: str, after_version: int = 0) -> list[RecordedEvent]:
        self._check_open()
        return [r for r in self._logs.get(job_id, ()) if r.version > after_version]

    async def find_by_task_id(self, task_id: str) -> JobState | None:
        self._check_open()
        job_id = self._by_task.get(task_id)
        return self._jobs.get(job_id) if job_id else None

    async def find_by_idempotency_key(self, user_id: str, key: str) -> JobState | None:
        self._check_open()
        job_id = self._by_key.get((user_id, key))
        return self._jobs.get(job_id) if job_id else None

    async def find_channel_holder(self, user_id: str, channel_id: str) -> JobState | None:
        self._check_open()
        job_id = self._locks.get(f"{user_id}\x1f{channel_id}")
        return self._jobs.get(job_id) if job_id else None

    async def list_jobs(self, user_id: str, channel_id: str, limit: int = 20) -> list[JobState]:
        self._check_open()
        mine = [
            s for s in self._jobs.values() if s.user_id == user_id and s.channel_id == channel_id
        ]
        mine.sort(key=lambda s: (s.created_at, s.job_id), reverse=True)
        return mine[:limit]

    async def find_jobs(
        self, where: JobFilter, *, after: PageKey | None = None, limit: int = 50
    ) -> list[JobState]:
        self._check_open()
        found = [s for s in self._jobs.values() if matches(where, s) and before(after, s)]
        found.sort(key=lambda s: (s.created_at, s.job_id), reverse=True)
        return found[: max(0, limit)]

    async def count_jobs(self, where: JobFilter) -> dict[Stage, int]:
        self._check_open()
        counts: dict[Stage, int] = {}
        for state in self._jobs.values():
            if matches(where, state):
                counts[state.stage] = counts.get(state.stage, 0) + 1
        return counts

    def changes(self) -> ChangeFeed:
        self._check_open()
        return self._changes.feed()

    async def claim(
        self, work: Work, now: datetime, *, owner: str, limit: int, lease_s: float
    ) -> list[JobState]:
        self._check_open()
        taken = [self._jobs[d.job_id] for d in self._queue(work, now)[: max(0, limit)]]
        until = now + timedelta(seconds=lease_s)
        for state in taken:
            self._leases[(state.job_id, work)] = (owner, until)
            if work in _FAIR:
                self._handouts += 1
                self._served[work][state.user_id] = self._handouts
        return taken

    async def queue(self, work: Work, now: datetime, limit: int) -> list[Due]:
        self._check_open()
        return self._queue(work, now)[: max(0, limit)]

    def _queue(self, work: Work, now: datetime) -> list[Due]:
        due: list[Due] = []
        for state in self._jobs.values():
            when = (
                state.deadline_at
                if work is Work.SWEEP
                else (state.due_at if state.work is work else None)
            )
            if when is None or when > now:
                continue
            lease = self._leases.get((state.job_id, work))
            if lease is not None and lease[1] > now:
                continue
            due.append(Due(state.job_id, state.user_id, when))
        if work in _FAIR:
            return fair_order(due, self._served[work])
        return sorted(due, key=lambda d: (d.due_at, d.job_id))

    async def renew(
        self, job_id: str, work: Work, now: datetime, *, owner: str, lease_s: float
    ) -> bool:
        self._check_open()
        lease = self._leases.get((job_id, work))
        if lease is None or lease[0] != owner or lease[1] <= now:
            return False
        self._leases[(job_id, work)] = (owner, now + timedelta(seconds=lease_s))
        return True

    async def release(self, job_id: str, work: Work, *, owner: str) -> None:
        self._check_open()
        lease = self._leases.get((job_id, work))
        if lease is not None and lease[0] == owner:
            del self._leases[(job_id, work)]

    async def release_owner(self, owner: str) -> int:
        self._check_open()
        mine = [k for k, (o, _) in self._leases.items() if o == owner]
        for k in mine:
            del self._leases[k]
        return len(mine)

    async def leases(self, owner: str | None = None) -> list[Lease]:
        self._check_open()
        return [
            Lease(job_id, work, holder, until)
            for (job_id, work), (holder, until) in self._leases.items()
            if owner in (None, holder)
        ]

    async def register_worker(self, worker: WorkerInfo) -> None:
        self._check_open()
        self._workers[worker.worker_id] = worker

    async def heartbeat(self, worker_id: str, now: datetime) -> bool:
        self._check_open()
        worker = self._workers.get(worker_id)
        if worker is None:
            return False
        self._workers[worker_id] = attrs.evolve(worker, heartbeat_at=now)
        return True

    async def workers(self) -> list[WorkerInfo]:
        self._check_open()
        return sorted(self._workers.values(), key=lambda w: (w.started_at, w.worker_id))

    async def reap_worker(self, worker_id: str) -> int:
        self._check_open()
        self._workers.pop(worker_id, None)
        return await self.release_owner(worker_id)

    async def wait_for_change(self, job_id: str, version: int, timeout: float) -> bool:
        self._check_open()

        async def current() -> int | None:
            state = self._jobs.get(job_id)
            return state.version if state is not None else None

        return await self._changes.wait(job_id, version, timeout, current)

    async def ensure_secret(self, name: str, candidate: str) -> str:
        self._check_open()
        return self._secrets.setdefault(name, candidate)

    async def record_orphan(self, orphan: OrphanCallback) -> None:
        self._check_open()
        self._orphans.append(orphan)

    async def list_orphans(self, limit: int = 50) -> list[OrphanCallback]:
        self._check_open()
        return list(reversed(self._orphans))[:limit]

    async def count_active(self, user_id: str | None = None) -> int:
        self._check_open()
        return sum(1 for s in self._jobs.values() if not s.done and user_id in (None, s.user_id))

    async def count_created(self, user_id: str, since: datetime) -> int:
        self._check_open()
        return sum(1 for s in self._jobs.values() if s.user_id == user_id and s.created_at >= since)

    # --- retention (clipjobs.app.retention.RetentionStore) ---------------------

    def _prunable(self, state: JobState, before: datetime) -> bool:
        return state.done and state.work is None and state.updated_at < before

    async def prune_candidates(self, before: datetime, limit: int) -> list[JobState]:
        self._check_open()
        found = [s for s in self._jobs.values() if self._prunable(s, before)]
        return sorted(found, key=lambda s: (s.updated_at, s.job_id))[: max(0, limit)]

    async def delete_jobs(self, job_ids: Sequence[str], before: datetime) -> list[str]:
        self._check_open()
        deleted = []
        for job_id in job_ids:
            state = self._jobs.get(job_id)
            if state is None or not self._prunable(state, before):
                continue
            del self._jobs[job_id]
            self._logs.pop(job_id, None)
            if state.task_id is not None and self._by_task.get(state.task_id) == job_id:
                del self._by_task[state.task_id]
            key = (state.user_id, state.idempotency_key or "")
            if state.idempotency_key is not None and self._by_key.get(key) == job_id:
                del self._by_key[key]
            for lease in [k for k in self._leases if k[0] == job_id]:
                del self._leases[lease]
            deleted.append(job_id)
        return deleted

    async def page_states(self, after_job_id: str, limit: int) -> list[JobState]:
        self._check_open()
        ids = sorted(i for i in self._jobs if i > after_job_id)[: max(0, limit)]
        return [self._jobs[i] for i in ids]

    async def ping(self) -> None:
        self._check_open()
