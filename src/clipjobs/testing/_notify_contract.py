"""``NotifyStoreContract``: what every store's subscriptions and webhook outbox guarantee.

Subclass it and override the ``store`` fixture (an open store that is both an
``EventStore`` and a ``NotifyStore``). Every test makes new users and jobs at
moments long before any other test's, so a claim at such a moment sees only
the test's own deliveries.
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ..app.notify import (
    Attempt,
    Delivery,
    DeliveryStatus,
    Subscription,
    TooManySubscriptions,
    webhook_id,
)
from ..app.ports import Commit
from ..domain.commands import FailJob
from ._store_contract import new_job, step

__all__ = ["NotifyStoreContract", "check_old_jobs_fail_into_the_outbox"]

_BASE = datetime(2026, 3, 1, tzinfo=UTC)


def _moment() -> datetime:
    """A moment long before other tests' deliveries, unique enough per test."""
    return _BASE - timedelta(days=7300 + int.from_bytes(secrets.token_bytes(2), "big"))


def _sub(
    user: str, events: tuple[str, ...] = ("job.failed",), at: datetime = _BASE
) -> Subscription:
    return Subscription(
        id=f"sub_{secrets.token_hex(8)}",
        user_id=user,
        url="https://hooks.example.org/clipjobs",
        events=events,
        secret=f"whsec_{secrets.token_hex(8)}",
        created_at=at,
    )


def _attempt(d: Delivery, at: datetime, code: int | None, next_at: datetime | None) -> Attempt:
    return Attempt(
        subscription_id=d.subscription_id,
        job_id=d.job_id,
        version=d.version,
        type=d.type,
        number=d.attempts + 1,
        at=at,
        status_code=code,
        duration_ms=12.5,
        error=None if code == 200 else "HTTP 500",
        next_at=next_at,
    )


async def check_old_jobs_fail_into_the_outbox(store: Any, created: Commit) -> None:
    """After a migration that added the outbox: ``created`` (appended before it) loads as it
    was, and failing that job now makes a delivery for its user's new subscription.
    """
    assert await store.load(created.job_id) == created.state
    sub = _sub(created.state.user_id, at=datetime.now(UTC))
    await store.add_subscription(sub, limit=10)
    await store.append(step(created.state, FailJob("E", "boom", datetime.now(UTC))))
    [delivery] = await store.deliveries(sub.id)
    assert delivery.job_id == created.job_id


class NotifyStoreContract:
    """Behaviour of ``NotifyStore`` on every backend. Override the ``store`` fixture."""

    pytestmark = pytest.mark.asyncio

    async def _failed_job(self, store: Any, user: str, at: datetime) -> str:
        created = new_job(at=at, user_id=user)
        await store.append(created)
        await store.append(step(created.state, FailJob("E", "boom", at + timedelta(seconds=1))))
        return created.job_id

    async def _subscribed_failures(
        self, store: Any, jobs: int = 1
    ) -> tuple[Subscription, list[str], datetime]:
        """A new user subscribed to job.failed, ``jobs`` of whose jobs failed a millisecond
        apart; with a moment at which all those deliveries are due.
        """
        at = _moment()
        sub = _sub(f"u-{secrets.token_hex(4)}")
        await store.add_subscription(sub, limit=10)
        job_ids = [
            await self._failed_job(store, sub.user_id, at + timedelta(milliseconds=i))
            for i in range(jobs)
        ]
        return sub, job_ids, at + timedelta(seconds=5)

    async def test_subscriptions_are_per_user_and_keep_their_secret(self, store: Any) -> None:
        """A user lists only their own subscriptions (secrets kept for the sender); delete works."""
        user, other = f"u-{secrets.token_hex(4)}", f"u-{secrets.token_hex(4)}"
        mine = _sub(user, ("job.failed", "job.succeeded"))
        theirs = _sub(other)
        await store.add_subscription(mine, limit=10)
        await store.add_subscription(theirs, limit=10)
        assert await store.list_subscriptions(user) == [mine]
        assert not await store.delete_subscription(user, theirs.id)
        assert await store.list_subscriptions(other) == [theirs]
        assert await store.delete_subscription(user, mine.id)
        assert await store.list_subscriptions(user) == []
        assert not await store.delete_subscription(user, mine.id)

    async def test_the_limit_refuses_one_more_and_stores_nothing(self, store: Any) -> None:
        """The (limit+1)-th subscription raises TooManySubscriptions; the first ``limit`` stay."""
        user = f"u-{secrets.token_hex(4)}"
        subs = [_sub(user, at=_BASE + timedelta(seconds=i)) for i in range(3)]
        for sub in subs:
            await store.add_subscription(sub, limit=3)
        with pytest.raises(TooManySubscriptions):
            await store.add_subscription(_sub(user), limit=3)
        assert await store.list_subscriptions(user) == subs

    async def test_concurrent_adds_respect_the_limit(self, store: Any) -> None:
        """Ten adds at once under a limit of four: exactly four are stored."""
        user = f"u-{secrets.token_hex(4)}"
        results = await asyncio.gather(
            *(store.add_subscription(_sub(user), limit=4) for _ in range(10)),
            return_exceptions=True,
        )
        assert sum(r is None for r in results) == 4
        assert all(isinstance(r, TooManySubscriptions) for r in results if r is not None)
        assert len(await store.list_subscriptions(user)) == 4

    async def test_a_finishing_commit_fills_the_outbox_of_matching_subscriptions(
        self, store: Any
    ) -> None:
        """A JobFailed commit makes one delivery per subscription of its user wanting job.failed."""
        at = _moment()
        user = f"u-{secrets.token_hex(4)}"
        wants = _sub(user, ("job.failed",))
        other_type = _sub(user, ("job.succeeded",))
        other_user = _sub(f"u-{secrets.token_hex(4)}", ("job.failed",))
        for sub in (wants, other_type, other_user):
            await store.add_subscription(sub, limit=10)
        job_id = await self._failed_job(store, user, at)
        [delivery] = await store.deliveries(wants.id)
        assert (delivery.job_id, delivery.version, delivery.type) == (job_id, 2, "job.failed")
        assert delivery.status is DeliveryStatus.PENDING and delivery.attempts == 0
        assert delivery.id == webhook_id(wants.id, job_id, 2)
        assert await store.deliveries(other_type.id) == []
        assert await store.deliveries(other_user.id) == []

    async def test_a_claim_leases_so_no_one_else_takes_it(self, store: Any) -> None:
        """A claimed delivery is not claimed again until its lease ends; ``skip`` is left."""
        sub, _, now = await self._subscribed_failures(store)
        assert (
            await store.claim_deliveries(now, owner="a", limit=10, lease_s=30, skip=[sub.id]) == []
        )
        [(delivery, got)] = await store.claim_deliveries(now, owner="a", limit=10, lease_s=30)
        assert got == sub
        assert await store.claim_deliveries(now, owner="b", limit=10, lease_s=30) == []
        later = now + timedelta(seconds=31)
        [(again, _)] = await store.claim_deliveries(later, owner="b", limit=10, lease_s=30)
        assert again.id == delivery.id

    async def test_concurrent_claims_never_share_a_delivery(self, store: Any) -> None:
        """Eight claims at once over six deliveries: each delivery goes to exactly one."""
        _, _, now = await self._subscribed_failures(store, jobs=6)
        claims = await asyncio.gather(
            *(store.claim_deliveries(now, owner=f"o{i}", limit=2, lease_s=30) for i in range(8))
        )
        ids = [d.id for claim in claims for d, _ in claim]
        assert len(ids) == len(set(ids)) == 6

    async def test_a_failed_attempt_waits_and_a_delivered_one_is_done(self, store: Any) -> None:
        """An attempt with next_at makes the delivery due then; a 2xx ends it; both are listed."""
        sub, [job_id], now = await self._subscribed_failures(store)
        [(d, _)] = await store.claim_deliveries(now, owner="a", limit=10, lease_s=30)
        retry_at = now + timedelta(seconds=10)
        first = _attempt(d, now, 500, retry_at)
        assert await store.finish_attempt(first, owner="a", status=DeliveryStatus.PENDING)
        assert (
            await store.claim_deliveries(
                now + timedelta(seconds=9), owner="a", limit=10, lease_s=30
            )
            == []
        )
        [(d2, _)] = await store.claim_deliveries(retry_at, owner="a", limit=10, lease_s=30)
        assert d2.attempts == 1
        second = _attempt(d2, retry_at, 200, None)
        assert await store.finish_attempt(second, owner="a", status=DeliveryStatus.DELIVERED)
        much_later = retry_at + timedelta(days=2)
        assert await store.claim_deliveries(much_later, owner="a", limit=10, lease_s=30) == []
        [done] = await store.deliveries(sub.id)
        assert done.status is DeliveryStatus.DELIVERED and done.attempts == 2
        assert await store.attempts(subscription_id=sub.id) == [second, first]
        assert await store.attempts(job_id=job_id) == [second, first]

    async def test_an_attempt_by_a_lost_lease_is_kept_but_changes_nothing(self, store: Any) -> None:
        """finish_attempt by an owner that lost the lease records the attempt and returns False."""
        sub, _, now = await self._subscribed_failures(store)
        [(d, _)] = await store.claim_deliveries(now, owner="a", limit=10, lease_s=1)
        later = now + timedelta(seconds=2)
        await store.claim_deliveries(later, owner="b", limit=10, lease_s=30)
        late = _attempt(d, later, 200, None)
        assert not await store.finish_attempt(late, owner="a", status=DeliveryStatus.DELIVERED)
        [still] = await store.deliveries(sub.id)
        assert still.status is DeliveryStatus.PENDING and still.attempts == 0
        assert await store.attempts(subscription_id=sub.id) == [late]

    async def test_deleting_a_subscription_drops_its_outbox(self, store: Any) -> None:
        """After delete, its deliveries are neither listed nor claimed."""
        sub, _, now = await self._subscribed_failures(store)
        assert await store.delete_subscription(sub.user_id, sub.id)
        assert await store.deliveries(sub.id) == []
        assert await store.claim_deliveries(now, owner="a", limit=10, lease_s=30) == []
