"""The pure parts of webhooks: which events notify, the webhook-id, the backoff."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from attrs import frozen

from clipjobs.app.notify import EVENT_TYPES, backoff_s, notifications, webhook_id
from clipjobs.domain.events import (
    ClipReady,
    JobFailed,
    JobTimedOut,
    ProviderStatus,
    Source,
    SunoProgressObserved,
    SunoSucceeded,
)

AT = datetime(2026, 1, 1, tzinfo=UTC)


@frozen
class JobCancelled:
    """Stands for the cancel feature's event, which notify maps by its class name."""

    at: datetime


def test_finishing_events_map_to_their_types_and_others_to_nothing() -> None:
    """Succeeded, clip ready, failed, timed out and cancelled notify; progress does not."""
    events = [
        SunoProgressObserved(ProviderStatus.TEXT_SUCCESS, Source.POLL, AT),
        SunoSucceeded(Source.CALLBACK, (), AT),
        ClipReady("https://x/clip.mp4", AT),
        JobFailed("E", "boom", AT),
        JobTimedOut(600, AT),
        JobCancelled(AT),
    ]
    found = notifications(events, 5)  # type: ignore[arg-type]
    assert found == [
        (6, "job.succeeded", AT),
        (7, "job.clip_ready", AT),
        (8, "job.failed", AT),
        (9, "job.timed_out", AT),
        (10, "job.cancelled", AT),
    ]
    assert [kind for _, kind, _ in found] == list(EVENT_TYPES)


def test_the_webhook_id_is_stable_and_distinct() -> None:
    """One id per (subscription, job, version), the same every time it is computed."""
    assert webhook_id("sub_a", "job_1", 3) == webhook_id("sub_a", "job_1", 3)
    ids = {
        webhook_id(s, j, v) for s in ("sub_a", "sub_b") for j in ("job_1", "job_2") for v in (3, 4)
    }
    assert len(ids) == 8 and all(i.startswith("msg_") for i in ids)


def test_the_backoff_starts_at_the_base_and_doubles_with_jitter() -> None:
    """Attempt n waits base·2^(n-1) to 1.25 times that, capped."""
    rng = random.Random(7)
    for attempt, low in ((1, 5.0), (2, 10.0), (3, 20.0), (4, 40.0)):
        wait = backoff_s(attempt, 5.0, rng=rng)
        assert low <= wait <= low * 1.25
    assert 3600.0 <= backoff_s(30, 5.0, cap_s=3600.0, rng=rng) <= 4500.0
