"""The in-memory store's subscriptions and outbox (``NotifyStore``), as a mixin.

Like the rest of ``InMemoryEventStore``, no method awaits in the middle, so
each is atomic on the event loop.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

import attrs

from .notify import (
    Attempt,
    Delivery,
    DeliveryStatus,
    Subscription,
    TooManySubscriptions,
    next_due,
    notifications,
)
from .ports import Commit

__all__ = ["MemoryNotify"]

_Key = tuple[str, str, int]


@attrs.define
class _Outbox:
    subscriptions: dict[str, Subscription] = attrs.field(factory=dict)
    deliveries: dict[_Key, Delivery] = attrs.field(factory=dict)
    leases: dict[_Key, tuple[str, datetime]] = attrs.field(factory=dict)
    attempts: list[Attempt] = attrs.field(factory=list)


class MemoryNotify:
    _outbox_state: _Outbox | None = None

    def _check_open(self) -> None:  # provided by the store
        raise NotImplementedError

    @property
    def _outbox(self) -> _Outbox:
        if self._outbox_state is None:
            self._outbox_state = _Outbox()
        return self._outbox_state

    def _enqueue_notifications(self, commit: Commit) -> None:
        """Called by ``append`` after the commit is accepted, before it returns."""
        found = notifications(commit.events, commit.expected_version + 1)
        if not found:
            return
        box, user = self._outbox, commit.state.user_id
        for sub in box.subscriptions.values():
            if sub.user_id != user:
                continue
            for version, kind, at in found:
                if kind in sub.events:
                    box.deliveries.setdefault(
                        (sub.id, commit.job_id, version),
                        Delivery(
                            subscription_id=sub.id,
                            job_id=commit.job_id,
                            version=version,
                            type=kind,
                            user_id=user,
                            event_at=at,
                            status=DeliveryStatus.PENDING,
                            attempts=0,
                            next_at=at,
                        ),
                    )

    async def add_subscription(self, subscription: Subscription, *, limit: int) -> None:
        self._check_open()
        box = self._outbox
        owned = sum(1 for s in box.subscriptions.values() if s.user_id == subscription.user_id)
        if owned >= limit:
            raise TooManySubscriptions(limit)
        box.subscriptions[subscription.id] = subscription

    async def list_subscriptions(self, user_id: str) -> list[Subscription]:
        self._check_open()
        subs = [s for s in self._outbox.subscriptions.values() if s.user_id == user_id]
        return sorted(subs, key=lambda s: (s.created_at, s.id))

    async def delete_subscription(self, user_id: str, subscription_id: str) -> bool:
        self._check_open()
        box = self._outbox
        sub = box.subscriptions.get(subscription_id)
        if sub is None or sub.user_id != user_id:
            return False
        del box.subscriptions[subscription_id]
        for key in [k for k in box.deliveries if k[0] == subscription_id]:
            del box.deliveries[key]
            box.leases.pop(key, None)
        box.attempts = [a for a in box.attempts if a.subscription_id != subscription_id]
        return True

    async def claim_deliveries(
        self,
        now: datetime,
        *,
        owner: str,
        limit: int,
        lease_s: float,
        skip: Collection[str] = (),
    ) -> list[tuple[Delivery, Subscription]]:
        self._check_open()
        box = self._outbox
        due = [
            (key, d)
            for key, d in box.deliveries.items()
            if d.status is DeliveryStatus.PENDING
            and d.next_at is not None
            and d.next_at <= now
            and d.subscription_id not in skip
            and box.leases.get(key, ("", now))[1] <= now
        ]
        due.sort(key=lambda kd: (kd[1].next_at, kd[0]))
        until = now + timedelta(seconds=lease_s)
        taken = []
        for key, delivery in due[: max(0, limit)]:
            box.leases[key] = (owner, until)
            taken.append((delivery, box.subscriptions[delivery.subscription_id]))
        return taken

    async def finish_attempt(self, attempt: Attempt, *, owner: str, status: DeliveryStatus) -> bool:
        self._check_open()
        box = self._outbox
        key = (attempt.subscription_id, attempt.job_id, attempt.version)
        delivery = box.deliveries.get(key)
        if delivery is None:
            return False  # the subscription was deleted meanwhile
        box.attempts.append(attempt)
        lease = box.leases.get(key)
        if lease is None or lease[0] != owner:
            return False
        del box.leases[key]
        box.deliveries[key] = attrs.evolve(
            delivery,
            status=status,
            attempts=delivery.attempts + 1,
            next_at=next_due(attempt, status),
        )
        return True

    async def deliveries(self, subscription_id: str) -> list[Delivery]:
        self._check_open()
        found = [
            d for d in self._outbox.deliveries.values() if d.subscription_id == subscription_id
        ]
        return sorted(found, key=lambda d: (d.event_at, d.job_id, d.version))

    async def attempts(
        self,
        *,
        subscription_id: str | None = None,
        job_id: str | None = None,
        limit: int = 50,
    ) -> list[Attempt]:
        self._check_open()
        found = [
            a
            for a in self._outbox.attempts
            if (subscription_id is None or a.subscription_id == subscription_id)
            and (job_id is None or a.job_id == job_id)
        ]
        found.sort(key=lambda a: a.at, reverse=True)
        return found[: max(0, limit)]
