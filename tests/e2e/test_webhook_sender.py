"""``WebhookSender`` alone: slow receivers kept apart, redirects, the DNS guard at delivery.

The sender reads a real SQLite store's outbox and posts to real receivers on
127.0.0.1; jobs are finished by commits through the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from _receiver import Receiver, serving
from aiohttp import web

from clipjobs import SystemClock
from clipjobs.app.metrics import Metrics
from clipjobs.app.notify import Attempt, DeliveryStatus, Subscription
from clipjobs.domain.commands import FailJob
from clipjobs.testing import new_job, step
from clipjobs_aiohttp import NotifyConfig, WebhookSender, new_webhook_secret
from clipjobs_aiohttp._notify_guard import Resolve
from clipjobs_sqlite import SQLiteEventStore

pytestmark = pytest.mark.asyncio

USER = "sender-user"


def subscription(url: str) -> Subscription:
    return Subscription(
        id=f"sub_{secrets.token_hex(12)}",
        user_id=USER,
        url=url,
        events=("job.failed",),
        secret=new_webhook_secret(),
        created_at=datetime.now(UTC),
    )


async def fail_jobs(store: SQLiteEventStore, n: int) -> list[str]:
    ids = []
    for _ in range(n):
        created = new_job(at=datetime.now(UTC), user_id=USER)
        await store.append(created)
        await store.append(step(created.state, FailJob("E", "boom", datetime.now(UTC))))
        ids.append(created.job_id)
    return ids


@contextlib.asynccontextmanager
async def sender(
    store: SQLiteEventStore,
    metrics: Metrics | None = None,
    *,
    owner: str = "test-sender",
    resolve: Resolve | None = None,
    **config: object,
) -> AsyncIterator[WebhookSender]:
    settings = {"allow_private": True, "backoff_s": 0.05, "poll_s": 0.05, **config}
    async with WebhookSender(
        store,
        store,
        clock=SystemClock(),
        owner=owner,
        config=NotifyConfig(**settings),  # type: ignore[arg-type]
        resolve=resolve,
        metrics=metrics,
    ) as running:
        yield running


async def test_a_slow_receiver_does_not_delay_another(tmp_path: Path) -> None:
    """While one receiver holds every request it gets, the other gets all its deliveries."""
    slow, fast = Receiver(default=200), Receiver()
    slow.script = ["hang"] * 100
    async with (
        SQLiteEventStore(tmp_path / "c.db") as store,
        serving(slow) as slow_url,
        serving(fast) as fast_url,
    ):
        slow_sub, fast_sub = subscription(slow_url), subscription(fast_url)
        for sub, receiver in ((slow_sub, slow), (fast_sub, fast)):
            await store.add_subscription(sub, limit=10)
            receiver.secrets.append(sub.secret)
        job_ids = await fail_jobs(store, 30)
        async with sender(store, timeout_s=30.0, per_subscription=4, max_in_flight=16):
            await fast.wait(lambda: len(fast.ok()) == 30)
            # The slow one has its own few in flight, no more, and none answered.
            assert 1 <= len(slow.received) <= 2 * 4 and slow.ok() == []
        assert {r.body["data"]["jobId"] for r in fast.ok()} == set(job_ids)


async def test_a_redirect_is_not_followed(tmp_path: Path) -> None:
    """A 302 is a failed attempt (retried), and its Location is never requested."""
    followed: list[str] = []

    async def redirect(request: web.Request) -> web.StreamResponse:
        if request.path == "/elsewhere":
            followed.append(request.path)
            return web.Response(status=200)
        raise web.HTTPFound("/elsewhere")

    app = web.Application()
    app.router.add_post("/hook", redirect)
    app.router.add_route("*", "/elsewhere", redirect)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    try:
        async with SQLiteEventStore(tmp_path / "c.db") as store:
            sub = subscription(url)
            await store.add_subscription(sub, limit=10)
            await fail_jobs(store, 1)
            async with sender(store):
                for _ in range(200):
                    if len(await store.attempts(subscription_id=sub.id)) >= 2:
                        break
                    await asyncio.sleep(0.05)
            attempts = await store.attempts(subscription_id=sub.id)
            assert len(attempts) >= 2
            assert all(a.status_code == 302 and a.error == "HTTP 302" for a in attempts)
            [delivery] = await store.deliveries(sub.id)
            assert delivery.status is DeliveryStatus.PENDING
    finally:
        await runner.cleanup()
    assert followed == []


async def test_a_name_that_now_resolves_inward_gets_no_connection(tmp_path: Path) -> None:
    """Without the allow flag, a subscribed name resolving to 127.0.0.1 at delivery time (or an
    inward IP literal) is refused before connecting; the receiver hears nothing.
    """
    receiver = Receiver()
    metrics = Metrics()

    async def rebinding(host: str) -> list[str]:
        return ["127.0.0.1"]  # was public when subscribed; points inward now

    async with SQLiteEventStore(tmp_path / "c.db") as store, serving(receiver) as url:
        port = url.rsplit(":", 1)[1].split("/")[0]
        by_name = subscription(f"http://hooks.rebind.test:{port}/hook")
        by_literal = subscription(url)
        for sub in (by_name, by_literal):
            await store.add_subscription(sub, limit=10)
        await fail_jobs(store, 1)
        async with sender(store, metrics, owner="guarded", resolve=rebinding, allow_private=False):
            for _ in range(200):
                got = [await store.attempts(subscription_id=s.id) for s in (by_name, by_literal)]
                if all(len(a) >= 2 for a in got):
                    break
                await asyncio.sleep(0.05)
        name_attempts = await store.attempts(subscription_id=by_name.id)
        literal_attempts = await store.attempts(subscription_id=by_literal.id)
    assert receiver.received == []
    assert name_attempts and all(a.status_code is None for a in name_attempts)
    assert "no address webhooks may be sent to" in (name_attempts[0].error or "")
    assert literal_attempts and all("refused" in (a.error or "") for a in literal_attempts)
    assert "clipjobs_webhook_attempts_total" in metrics.render()


async def test_a_delivery_is_given_up_when_its_event_is_old_enough(tmp_path: Path) -> None:
    """An event older than give_up_s fails on its first failed attempt (no retry scheduled)."""
    receiver = Receiver(default=503)
    async with SQLiteEventStore(tmp_path / "c.db") as store, serving(receiver) as url:
        sub = subscription(url)
        receiver.secrets.append(sub.secret)
        await store.add_subscription(sub, limit=10)
        old = datetime.now(UTC) - timedelta(hours=25)
        created = new_job(at=old, user_id=USER)
        await store.append(created)
        await store.append(step(created.state, FailJob("E", "boom", old)))
        async with sender(store, give_up_s=86400.0):
            await receiver.wait(lambda: len(receiver.received) >= 1)
            for _ in range(100):
                [delivery] = await store.deliveries(sub.id)
                if delivery.status is DeliveryStatus.FAILED:
                    break
                await asyncio.sleep(0.05)
        assert delivery.status is DeliveryStatus.FAILED and delivery.attempts == 1
        [attempt] = await store.attempts(subscription_id=sub.id)
        assert attempt.status_code == 503 and attempt.next_at is None


class GatedStore(SQLiteEventStore):
    """Recording an attempt waits for ``gate``: a sender can be stopped while it records."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.recording = asyncio.Event()
        self.gate = asyncio.Event()

    async def finish_attempt(self, attempt: Attempt, *, owner: str, status: DeliveryStatus) -> bool:
        self.recording.set()
        await self.gate.wait()
        return await super().finish_attempt(attempt, owner=owner, status=status)


async def test_a_sender_stopped_while_recording_an_answer_still_records_it(
    tmp_path: Path,
) -> None:
    """The receiver said 200 and the sender is stopped while it writes that down: the write
    finishes (delivered, one attempt), so the delivery is not sent again after its lease."""
    receiver = Receiver()
    async with GatedStore(tmp_path / "g.db") as store, serving(receiver) as url:
        sub = subscription(url)
        receiver.secrets.append(sub.secret)
        await store.add_subscription(sub, limit=10)
        await fail_jobs(store, 1)
        running = sender(store, lease_s=60.0)
        await running.__aenter__()
        await asyncio.wait_for(store.recording.wait(), 10)  # a bound for a hang, not a timing
        stopping = asyncio.create_task(running.__aexit__(None, None, None))
        await asyncio.sleep(0.05)  # the stop is under way, its cancel delivered
        store.gate.set()
        await asyncio.wait_for(stopping, 10)
        [delivery] = await store.deliveries(sub.id)
        assert delivery.status is DeliveryStatus.DELIVERED and delivery.attempts == 1
        [attempt] = await store.attempts(subscription_id=sub.id)
        assert attempt.status_code == 200 and attempt.error is None


async def test_a_stopped_sender_hands_an_attempt_in_flight_back(tmp_path: Path) -> None:
    """Closing a sender mid-attempt records it as interrupted and frees the lease, so another
    sender delivers it (same webhook-id) long before the 60 s lease would have run out.
    """
    receiver = Receiver(script=["hang"])
    async with SQLiteEventStore(tmp_path / "c.db") as store, serving(receiver) as url:
        sub = subscription(url)
        receiver.secrets.append(sub.secret)
        await store.add_subscription(sub, limit=10)
        await fail_jobs(store, 1)
        async with sender(store, lease_s=60.0, timeout_s=30.0):
            await receiver.wait(lambda: len(receiver.received) == 1)
        [interrupted] = await store.attempts(subscription_id=sub.id)
        assert interrupted.error == "interrupted: the sender stopped"
        assert interrupted.next_at is not None
        async with sender(store, owner="another-process"):
            await receiver.wait(lambda: receiver.ok(), timeout=10)
            for _ in range(200):  # the 200 is in; its record follows
                [delivered] = await store.deliveries(sub.id)
                if delivered.status is not DeliveryStatus.PENDING:
                    break
                await asyncio.sleep(0.05)
        assert delivered.status is DeliveryStatus.DELIVERED and delivered.attempts == 2
    assert len({r.webhook_id for r in receiver.received}) == 1
