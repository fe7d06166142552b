"""``WebhookSender``: posts the outbox's deliveries, signed the Standard Webhooks way.

The loop leases due deliveries from the store (so one process sends each),
posts each in its own task (so a slow receiver holds only its own
deliveries: at most ``per_subscription`` of one subscription are in flight
in a process), and records every attempt. A 2xx is delivered; anything else,
a timeout or a refused connection is tried again after ``backoff_s`` doubled
per attempt (plus jitter), until ``give_up_s`` after the event: then the
delivery is failed.

Every attempt carries the delivery's one ``webhook-id`` (the same after a
restart), the attempt's ``webhook-timestamp`` and ``webhook-signature``:
``v1,`` and base64 HMAC-SHA256 of ``id.timestamp.body``, made by the
``standardwebhooks`` package, whose verifier receivers use. Redirects are not
followed; at most ``max_response_bytes`` of an answer are read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable
from datetime import timedelta

import aiohttp
from attrs import frozen
from standardwebhooks import Webhook

from clipjobs.app.metrics import Metrics
from clipjobs.app.notify import (
    Attempt,
    Delivery,
    DeliveryStatus,
    NotifyStore,
    Subscription,
    backoff_s,
)
from clipjobs.app.ports import Clock, EventStore
from clipjobs.domain.codec import format_ts
from clipjobs.domain.errors import StoreError

from ._notify_guard import (
    GuardedResolver,
    InwardAddress,
    Resolve,
    literal_refused,
    system_resolve,
)
from ._views import job_body

__all__ = ["NotifyConfig", "WebhookSender"]

log = logging.getLogger("clipjobs.notify")


@frozen
class NotifyConfig:
    allow_private: bool = False
    #: The first wait after a failed attempt; each later one doubles (at most ``backoff_cap_s``).
    backoff_s: float = 5.0
    backoff_cap_s: float = 3600.0
    #: One attempt's limit, from connecting to the end of the answer.
    timeout_s: float = 10.0
    #: A delivery still failing this long after its event is given up.
    give_up_s: float = 86400.0
    #: How long a claim lasts: longer than an attempt, so no one else sends meanwhile.
    lease_s: float = 60.0
    #: How often the outbox is looked at when it had nothing due.
    poll_s: float = 0.25
    max_in_flight: int = 64
    per_subscription: int = 8
    max_response_bytes: int = 64 * 1024
    stale_after_s: float = 60.0


class WebhookSender:
    """The delivery loop of one process; ``async with`` or ``start()`` / ``aclose()``."""

    def __init__(
        self,
        store: NotifyStore,
        jobs: EventStore,
        *,
        clock: Clock,
        owner: str,
        config: NotifyConfig | None = None,
        resolve: Resolve | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics
        self._store = store
        self._jobs = jobs
        self._clock = clock
        self._owner = owner
        self._config = config or NotifyConfig()
        self._resolve = resolve or system_resolve
        self._session: aiohttp.ClientSession | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._busy: dict[str, int] = {}
        self._done = asyncio.Event()
        self._rng = random.Random()
        #: Attempts made by this sender (tests and metrics read it).
        self.attempts = 0

    async def __aenter__(self) -> WebhookSender:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        if self._loop_task is not None:
            return
        config = self._config
        connector = aiohttp.TCPConnector(
            resolver=GuardedResolver(self._resolve, allow_private=config.allow_private),
            limit=config.max_in_flight,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers={"User-Agent": "clipjobs-webhooks"},
            timeout=aiohttp.ClientTimeout(total=config.timeout_s),
        )
        self._loop_task = asyncio.create_task(self._run(), name="clipjobs-webhooks")

    async def aclose(self) -> None:
        """Stop claiming and sending; a delivery cut short is recorded as interrupted and
        left due after the backoff (a killed process's waits for its lease to end instead)."""
        task, self._loop_task = self._loop_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for running in list(self._tasks):
            running.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def _run(self) -> None:
        config = self._config
        while True:
            free = config.max_in_flight - len(self._tasks)
            claimed: list[tuple[Delivery, Subscription]] = []
            if free > 0:
                busy = [s for s, n in self._busy.items() if n >= config.per_subscription]
                try:
                    claimed = await self._store.claim_deliveries(
                        self._clock.now(),
                        owner=self._owner,
                        limit=min(free, config.per_subscription),
                        lease_s=config.lease_s,
                        skip=busy,
                    )
                except StoreError as exc:
                    log.warning("webhooks: cannot read the outbox: %s", exc)
                except Exception:  # a bug must not end delivery for the process's life
                    log.exception("webhooks: claiming deliveries failed")
            for delivery, sub in claimed:
                self._busy[sub.id] = self._busy.get(sub.id, 0) + 1
                task = asyncio.create_task(self._deliver(delivery, sub))
                self._tasks.add(task)
                task.add_done_callback(self._finished(sub.id))
            if claimed and len(claimed) == min(free, config.per_subscription):
                continue  # more may be due right now
            self._done.clear()
            with contextlib.suppress(TimeoutError):
                # A finished delivery frees a slot; otherwise look again after poll_s.
                await asyncio.wait_for(self._done.wait(), config.poll_s)

    def _finished(self, sub_id: str) -> Callable[[asyncio.Task[None]], None]:
        def done(task: asyncio.Task[None]) -> None:
            self._tasks.discard(task)
            left = self._busy.get(sub_id, 1) - 1
            if left > 0:
                self._busy[sub_id] = left
            else:
                self._busy.pop(sub_id, None)
            if not task.cancelled() and task.exception() is not None:
                log.error("webhooks: a delivery failed unexpectedly: %r", task.exception())
            self._done.set()

        return done

    async def _body(self, delivery: Delivery) -> str:
        state = await self._jobs.load(delivery.job_id)
        data = (
            job_body(
                state,
                lang="en",
                now=self._clock.now(),
                stale_after_s=self._config.stale_after_s,
                request_id=delivery.id,
            )
            if state is not None
            else {"jobId": delivery.job_id}
        )
        payload = {"type": delivery.type, "timestamp": format_ts(delivery.event_at), "data": data}
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))

    async def _post(self, delivery: Delivery, sub: Subscription) -> tuple[int | None, str | None]:
        """One attempt: the receiver's status (None without an answer) and why it failed."""
        config, session = self._config, self._session
        assert session is not None
        if literal_refused(sub.url, allow_private=config.allow_private):
            return None, "refused: the URL's address is private, loopback or link-local"
        body = await self._body(delivery)
        sent_at = self._clock.now()
        headers = {
            "Content-Type": "application/json",
            "webhook-id": delivery.id,
            "webhook-timestamp": str(int(sent_at.timestamp())),
            "webhook-signature": Webhook(sub.secret).sign(delivery.id, sent_at, body),
        }
        try:
            async with session.post(
                sub.url, data=body.encode(), headers=headers, allow_redirects=False
            ) as response:
                # Read a little of the answer (keeps the connection reusable), never all of it.
                await response.content.read(config.max_response_bytes)
                status = response.status
        except TimeoutError:
            return None, f"timed out after {config.timeout_s:g} s"
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, InwardAddress):
                return None, f"refused: {exc.os_error}"
            return None, f"{type(exc).__name__}: {str(exc)[:200]}"
        except aiohttp.ClientError as exc:
            return None, f"{type(exc).__name__}: {str(exc)[:200]}"
        except OSError as exc:
            return None, f"{type(exc).__name__}: {str(exc)[:200]}"
        if 200 <= status < 300:
            return status, None
        return status, f"HTTP {status}"

    async def _deliver(self, delivery: Delivery, sub: Subscription) -> None:
        started, at = time.perf_counter(), self._clock.now()
        interrupted = False
        try:
            status_code, error = await self._post(delivery, sub)
        except asyncio.CancelledError:
            # Stopping: record the attempt and free the lease, so the next process
            # sends it again after the backoff instead of after the lease.
            interrupted = True
            status_code, error = None, "interrupted: the sender stopped"
        duration_ms = (time.perf_counter() - started) * 1000
        self.attempts += 1
        number = delivery.attempts + 1
        config = self._config
        next_at = None
        if error is None:
            outcome = DeliveryStatus.DELIVERED
        else:
            wait = backoff_s(number, config.backoff_s, cap_s=config.backoff_cap_s, rng=self._rng)
            retry_at = self._clock.now() + timedelta(seconds=wait)
            if retry_at - delivery.event_at > timedelta(seconds=config.give_up_s):
                outcome = DeliveryStatus.FAILED
            else:
                outcome, next_at = DeliveryStatus.PENDING, retry_at
        attempt = Attempt(
            subscription_id=sub.id,
            job_id=delivery.job_id,
            version=delivery.version,
            type=delivery.type,
            number=number,
            at=at,
            status_code=status_code,
            duration_ms=duration_ms,
            error=error,
            next_at=next_at,
        )
        # The subscription id, never its URL: a URL may carry the receiver's own token.
        log.info(
            "webhook %s %s job %s attempt %d: %s",
            delivery.id,
            delivery.type,
            delivery.job_id,
            number,
            error or f"delivered ({status_code})",
            extra={"job_id": delivery.job_id},
        )
        if self._metrics is not None:
            self._metrics.inc("clipjobs_webhook_attempts_total", outcome=outcome.value)
        # Written down even if the sender is stopped meanwhile: the answer is known, and an
        # attempt left unrecorded would be sent again only after its lease.
        recording = asyncio.ensure_future(
            self._store.finish_attempt(attempt, owner=self._owner, status=outcome)
        )
        while not recording.done():
            try:
                await asyncio.shield(recording)
            except asyncio.CancelledError:
                interrupted = True
            except StoreError:
                pass  # looked at below
        if not recording.cancelled() and isinstance(recording.exception(), StoreError):
            # The lease runs out and the delivery is sent again, with the same webhook-id.
            log.warning(
                "webhooks: cannot record attempt of %s: %s", delivery.id, recording.exception()
            )
        if interrupted:
            raise asyncio.CancelledError
