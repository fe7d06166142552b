"""Telling other systems (SPEC 10.5): subscriptions, the outbox of deliveries, retries.

A user subscribes a URL to event types. When a commit carries an event that
finishes something (Suno succeeded, the clip is ready, the job failed, timed
out or was cancelled), the store writes one *delivery* per matching
subscription **in the same transaction as the append**: the outbox can never
miss a committed event, nor hold one that was not committed. A sender (in
``clipjobs_aiohttp``) leases due deliveries like other work, posts them, and
records every attempt; a failed attempt is tried again later, with
exponential backoff and jitter, until ``give_up_s`` after the event.

This module is pure: types, the event-to-type mapping, the backoff, the
``NotifyStore`` port the stores implement, and what every store does alike
without its database: a stored row's fields and their order, reading an
object back from one, and when a delivery is due after an attempt.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Collection, Iterable
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, TypeVar, runtime_checkable

import attrs
from attrs import field, frozen

from ..domain.errors import InvalidRequest
from ..domain.events import Event

__all__ = [
    "EVENT_TYPES",
    "Attempt",
    "Delivery",
    "DeliveryStatus",
    "NotifyStore",
    "Subscription",
    "TooManySubscriptions",
    "attempt_from_row",
    "backoff_s",
    "delivery_from_row",
    "next_due",
    "notifications",
    "row",
    "row_fields",
    "subscription_from_row",
    "webhook_id",
]

#: The event types a subscription may name, in the order the docs list them.
EVENT_TYPES: tuple[str, ...] = (
    "job.succeeded",
    "job.clip_ready",
    "job.failed",
    "job.timed_out",
    "job.cancelled",
)

#: Which logged event (by class name) is which notification. ``JobCancelled``
#: is named, not imported: it belongs to the cancel feature, and maps as soon
#: as that event exists.
_BY_EVENT = {
    "SunoSucceeded": "job.succeeded",
    "ClipReady": "job.clip_ready",
    "JobFailed": "job.failed",
    "JobTimedOut": "job.timed_out",
    "JobCancelled": "job.cancelled",
}


class TooManySubscriptions(InvalidRequest):
    """The user already has the most subscriptions allowed."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"At most {limit} subscriptions per user.", field="url")
        self.limit = limit


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


def notifications(events: Iterable[Event], first_version: int) -> list[tuple[int, str, datetime]]:
    """``(version, type, at)`` for each event in a commit that is a notification."""
    found = []
    for version, event in enumerate(events, start=first_version):
        kind = _BY_EVENT.get(type(event).__name__)
        if kind is not None:
            found.append((version, kind, event.at))
    return found


def webhook_id(subscription_id: str, job_id: str, version: int) -> str:
    """The ``webhook-id`` of one delivery: the same on every attempt and after restarts."""
    digest = hashlib.sha256(f"{subscription_id}\x1f{job_id}\x1f{version}".encode()).hexdigest()
    return f"msg_{digest[:32]}"


def backoff_s(
    attempt: int, base_s: float, *, cap_s: float = 3600.0, rng: random.Random | None = None
) -> float:
    """The wait after the ``attempt``-th failed attempt (1, 2, …).

    ``base_s`` doubled per attempt, at most ``cap_s``, plus up to a quarter
    more of jitter, so receivers that fail together are not retried together.
    """
    wait = min(cap_s, base_s * 2.0 ** max(0, attempt - 1))
    return wait * (1.0 + 0.25 * (rng or random).random())


@frozen
class Subscription:
    """A user's URL and the event types sent to it. ``secret`` signs; never shown again."""

    id: str
    user_id: str
    url: str
    events: tuple[str, ...]
    secret: str = field(repr=False)
    created_at: datetime


@frozen
class Delivery:
    """One event for one subscription: sent until a 2xx, or until it is given up."""

    subscription_id: str
    job_id: str
    version: int
    type: str
    user_id: str
    event_at: datetime
    status: DeliveryStatus
    attempts: int
    next_at: datetime | None

    @property
    def id(self) -> str:
        return webhook_id(self.subscription_id, self.job_id, self.version)


@frozen
class Attempt:
    """One try at a delivery, as it ended."""

    subscription_id: str
    job_id: str
    version: int
    type: str
    number: int
    at: datetime
    #: The receiver's HTTP status; None when there was no answer (refused, timed out).
    status_code: int | None
    duration_ms: float
    #: Why it did not count as delivered (None when it did).
    error: str | None
    #: When the next attempt is due; None when this was the last one.
    next_at: datetime | None

    @property
    def delivery_id(self) -> str:
        return webhook_id(self.subscription_id, self.job_id, self.version)

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def next_due(attempt: Attempt, status: DeliveryStatus) -> datetime | None:
    """When a delivery is due again after ``attempt`` left it in ``status``: None once done."""
    return attempt.next_at if status is DeliveryStatus.PENDING else None


# --- rows: what the SQL stores write and read back alike ----------------------------

_Stored = Subscription | Delivery | Attempt
_T = TypeVar("_T", Subscription, Delivery, Attempt)

#: Turns one value into the form a store keeps, or a kept one back.
Convert = Callable[[Any], Any]


def _as_is(value: Any) -> Any:
    return value


def row_fields(cls: type[_Stored]) -> tuple[str, ...]:
    """The columns of a stored ``cls``: its fields, in the order they are declared."""
    return tuple(f.name for f in attrs.fields(cls))


def row(value: _Stored, write: Convert = _as_is) -> tuple[Any, ...]:
    """``value``'s fields in ``row_fields`` order, each as ``write`` stores it."""
    return tuple(write(v) for v in attrs.astuple(value, recurse=False))


def _from_row(cls: type[_T], values: Iterable[Any], **read: Convert) -> _T:
    """``cls`` from its columns in ``row_fields`` order; ``read`` decodes the named ones.

    A None column stays None (an optional field that is not set).
    """
    fields = dict(zip(row_fields(cls), values, strict=True))
    for name, decode in read.items():
        if fields[name] is not None:
            fields[name] = decode(fields[name])
    return cls(**fields)


def subscription_from_row(
    values: Iterable[Any], *, time: Convert = _as_is, events: Convert = tuple
) -> Subscription:
    """A stored subscription; ``time`` and ``events`` read back how the store keeps those."""
    return _from_row(Subscription, values, events=events, created_at=time)


def delivery_from_row(values: Iterable[Any], *, time: Convert = _as_is) -> Delivery:
    """A stored delivery; ``time`` reads back a time as the store keeps it."""
    return _from_row(Delivery, values, status=DeliveryStatus, event_at=time, next_at=time)


def attempt_from_row(values: Iterable[Any], *, time: Convert = _as_is) -> Attempt:
    """A stored attempt; ``time`` reads back a time as the store keeps it."""
    return _from_row(Attempt, values, at=time, next_at=time)


@runtime_checkable
class NotifyStore(Protocol):
    """Subscriptions and their outbox; the stores fill the outbox inside ``append``.

    Every method may raise :class:`~clipjobs.domain.errors.StoreUnavailable`.
    """

    async def add_subscription(self, subscription: Subscription, *, limit: int) -> None:
        """Store it, or raise TooManySubscriptions when the user has ``limit`` already."""
        ...

    async def list_subscriptions(self, user_id: str) -> list[Subscription]:
        """The user's subscriptions, oldest first."""
        ...

    async def delete_subscription(self, user_id: str, subscription_id: str) -> bool:
        """Remove it with its deliveries and attempts; False when the user has no such one."""
        ...

    async def claim_deliveries(
        self,
        now: datetime,
        *,
        owner: str,
        limit: int,
        lease_s: float,
        skip: Collection[str] = (),
    ) -> list[tuple[Delivery, Subscription]]:
        """Lease up to ``limit`` pending deliveries due at ``now``, oldest due first.

        Deliveries with a live lease (any owner) and those of the subscriptions
        in ``skip`` are left; two concurrent claims never return the same one.
        """
        ...

    async def finish_attempt(self, attempt: Attempt, *, owner: str, status: DeliveryStatus) -> bool:
        """Record the attempt; update the delivery and free its lease if ``owner`` holds it.

        False when the lease was lost (the attempt is recorded all the same).
        """
        ...

    async def deliveries(self, subscription_id: str) -> list[Delivery]:
        """Every delivery of a subscription, oldest event first."""
        ...

    async def attempts(
        self,
        *,
        subscription_id: str | None = None,
        job_id: str | None = None,
        limit: int = 50,
    ) -> list[Attempt]:
        """The latest attempts of a subscription or of a job, newest first."""
        ...
