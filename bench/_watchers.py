"""Many watchers of one clipjobs server, each on its own job, in one process (bench_watchers.py).

Over raw asyncio sockets, as cheap per connection as ``_loadgen.py``: every
watcher either holds an SSE stream of its job open (``mode: "sse"``) or polls
GET of it every ``poll_every_s`` at its own phase (``mode: "poll"``, as the
seed's UI did). Meanwhile an updater posts Suno progress callbacks to the
webhook at ``rate`` per second, each for a random watched job (open loop).

Input (stdin, JSON)::

    {"url": ..., "token": ..., "secret": ..., "jobs": [...], "mode": "sse"|"poll",
     "rate": 100, "warmup_s": 4, "duration_s": 30, "drain_s": 5, "poll_every_s": 3,
     "server_pid": N}

Output (stdout, JSON): what the watchers saw. For every update posted in the
window: posted -> seen by its watcher (the watcher's receive time minus the
post's scheduled time, one clock), and for every change a watcher saw: the
job's ``updatedAt`` (when the change was decided, just before its append;
millisecond resolution) -> seen. An update not seen ``drain_s`` after the
window counts as late, with the latency it had when the bench gave up. The
server's CPU time (``/proc/PID/stat``) over the window, and this process's.
"""

from __future__ import annotations

import asyncio
import json
import random
import resource
import sys
import time
from collections import deque
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _loadgen import cpu_seconds, percentile, settle_answer
from _server import suno_callback

from clipjobs.app.webhook import WebhookSigner


def _updated_at(body: dict[str, Any]) -> float:
    return datetime.fromisoformat(body["updatedAt"].replace("Z", "+00:00")).timestamp()


class Watcher(asyncio.Protocol):
    """One job's watcher: an SSE stream, or a connection that polls GET."""

    def __init__(self, bench: Bench, job: str) -> None:
        self.bench, self.job = bench, job
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.version = 0
        self.answer: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.answer is not None and not self.answer.done():
            self.answer.set_exception(ConnectionError("closed"))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.bench.mode == "sse":
            self._sse_lines()
        else:
            settle_answer(self.buf, self.answer)

    # SSE: the body is chunked; every event's ``data:`` line is whole within one chunk.
    def _sse_lines(self) -> None:
        while (end := self.buf.find(b"\n")) >= 0:
            line = bytes(self.buf[:end])
            del self.buf[: end + 1]
            if line.startswith(b"data: "):
                self.bench.seen(self, json.loads(line[6:]))

    async def poll_forever(self, every: float) -> None:
        assert self.transport is not None
        request = self.bench.request(f"/api/music-clips/jobs/{self.job}")
        await asyncio.sleep(random.uniform(0, every))  # each page opened at its own moment
        next_at = time.perf_counter()
        while not self.closed:
            self.answer = asyncio.get_running_loop().create_future()
            self.transport.write(request)
            try:
                status, body = await self.answer
            except ConnectionError:
                return
            if status == 200:
                self.bench.seen(self, json.loads(body))
            next_at += every
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))


class Bench:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.mode: str = spec["mode"]
        parts = urlsplit(spec["url"])
        self.host, self.port, self.netloc = parts.hostname, parts.port, parts.netloc
        self.auth = f"Authorization: Bearer {spec['token']}\r\n"
        self.watchers: dict[str, Watcher] = {}
        self.initial = 0
        self.all_connected = asyncio.Event()
        #: Window: [measure_from, stop_at) in time.perf_counter(); wall clock offset for updatedAt.
        self.measure_from = float("inf")
        self.stop_at = float("inf")
        self.wall_minus_perf = time.time() - time.perf_counter()
        #: Scheduled times (perf_counter) of the window's updates not yet seen, per job.
        self.pending: dict[str, deque[float]] = {}
        self.posted_to_seen: list[float] = []
        self.appended_to_seen: list[float] = []
        self.changes_seen = 0
        #: Job bodies received (SSE events, or GET answers): what the server sent.
        self.answers = 0
        self.updates_posted = 0
        self.post_errors = 0
        self.post_ms: list[float] = []

    def request(self, path: str, extra: str = "") -> bytes:
        return (
            f"GET {path} HTTP/1.1\r\nHost: {self.netloc}\r\n{self.auth}{extra}"
            "Connection: keep-alive\r\n\r\n"
        ).encode()

    def seen(self, watcher: Watcher, body: dict[str, Any]) -> None:
        self.answers += 1
        version = int(body["version"])
        if version <= watcher.version:
            return
        first = watcher.version == 0
        watcher.version = version
        if first:
            self.initial += 1
            if self.initial == len(self.watchers):
                self.all_connected.set()
            return
        now = time.perf_counter()
        if now < self.measure_from:
            return
        queue = self.pending.get(watcher.job)
        if queue:
            self.changes_seen += 1
            updated = _updated_at(body)
            self.appended_to_seen.append((now + self.wall_minus_perf - updated) * 1000)
            # The updates this answer shows: those decided by its updatedAt (ms resolution).
            shown = updated - self.wall_minus_perf + 0.001
            while queue and queue[0] <= shown:
                self.posted_to_seen.append((now - queue.popleft()) * 1000)

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        jobs: list[str] = self.spec["jobs"]
        for start in range(0, len(jobs), 250):
            batch = jobs[start : start + 250]
            made = await asyncio.gather(
                *(loop.create_connection(lambda j=j: Watcher(self, j), self.host, self.port)
                  for j in batch)
            )  # fmt: skip
            for job, (_, watcher) in zip(batch, made, strict=True):
                self.watchers[job] = watcher
        if self.mode == "sse":
            for job, watcher in self.watchers.items():
                assert watcher.transport is not None
                watcher.transport.write(self.request(f"/api/music-clips/jobs/{job}/events"))
        else:
            every = float(self.spec.get("poll_every_s", 3.0))
            self.pollers = [
                asyncio.create_task(w.poll_forever(every)) for w in self.watchers.values()
            ]

    async def update(self) -> None:
        """Post progress callbacks at ``rate``/s for random jobs (open loop, a few connections)."""
        signer = WebhookSigner(self.spec["secret"])
        jobs = list(self.watchers)
        rng = random.Random(7)
        interval = 1.0 / float(self.spec["rate"])
        queue: asyncio.Queue[tuple[float, str] | None] = asyncio.Queue()
        stages = ("text", "first")
        counts: dict[str, int] = {}

        async def poster() -> None:
            reader, writer = await asyncio.open_connection(self.host, self.port)
            while (item := await queue.get()) is not None:
                scheduled, job = item
                n = counts[job] = counts.get(job, 0) + 1
                body = json.dumps(suno_callback(job, stages[n % 2])).encode()
                path = f"/api/webhooks/suno/music?job={job}&token={signer.token(job)}"
                writer.write(
                    f"POST {path} HTTP/1.1\r\nHost: {self.netloc}\r\nContent-Type: "
                    f"application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                if not head.startswith(b"HTTP/1.1 200"):
                    self.post_errors += 1
                self.post_ms.append((time.perf_counter() - scheduled) * 1000)
            writer.close()

        posters = [asyncio.create_task(poster()) for _ in range(8)]
        due = self.measure_from
        while due < self.stop_at:
            now = time.perf_counter()
            while due <= now and due < self.stop_at:
                job = jobs[rng.randrange(len(jobs))]
                self.pending.setdefault(job, deque()).append(due)
                self.updates_posted += 1
                queue.put_nowait((due, job))
                due += interval
            await asyncio.sleep(max(0.0, min(due - time.perf_counter(), 0.005)))
        for _ in posters:
            queue.put_nowait(None)
        # A server too busy to take them all: what is not posted by the end of the drain stays
        # unseen (and counts as late), but the run ends.
        give_up = self.stop_at + float(self.spec.get("drain_s", 5.0)) - time.perf_counter()
        _, unfinished = await asyncio.wait(posters, timeout=max(0.0, give_up))
        for poster in unfinished:
            poster.cancel()
        await asyncio.gather(*posters, return_exceptions=True)

    async def report(self) -> None:
        """Progress on stderr every 5 s (``verbose``), to see where a slow run spends its time."""
        while True:
            await asyncio.sleep(5)
            print(
                f"initial {self.initial}/{len(self.watchers)}, bodies {self.answers},"
                f" posted {self.updates_posted},"
                f" post answers {len(self.post_ms)}, changes seen {self.changes_seen}",
                file=sys.stderr,
                flush=True,
            )

    async def run(self) -> dict[str, Any]:
        spec = self.spec
        if spec.get("verbose"):
            self.reporter = asyncio.create_task(self.report())
        started = time.perf_counter()
        await self.connect()
        await asyncio.wait_for(self.all_connected.wait(), 600)
        connected_s = time.perf_counter() - started
        await asyncio.sleep(float(spec["warmup_s"]))
        server = int(spec["server_pid"])
        self.measure_from = time.perf_counter()
        self.stop_at = self.measure_from + float(spec["duration_s"])
        cpu0, own0 = cpu_seconds(server), time.process_time()

        async def at_the_end() -> tuple[float, float, float]:
            await asyncio.sleep(max(0.0, self.stop_at - time.perf_counter()))
            now = time.perf_counter()
            return cpu_seconds(server), time.process_time(), now - self.measure_from

        end = asyncio.create_task(at_the_end())
        await self.update()
        cpu1, own1, window = await end
        # Updates of the window still unseen get drain_s more; then they count as late.
        give_up = self.stop_at + float(spec.get("drain_s", 5.0))
        while any(self.pending.values()) and time.perf_counter() < give_up:
            await asyncio.sleep(0.05)
        now = time.perf_counter()
        unseen = [now - t for q in self.pending.values() for t in q]
        self.posted_to_seen += [s * 1000 for s in unseen]
        for watcher in self.watchers.values():
            if watcher.transport is not None:
                watcher.transport.close()
        for poller in getattr(self, "pollers", []):
            poller.cancel()
        closed = sum(w.closed for w in self.watchers.values())

        def stats(ms: list[float]) -> dict[str, float]:
            return {
                "count": len(ms),
                "p50": percentile(ms, 50),
                "p99": percentile(ms, 99),
                "max": max(ms, default=float("nan")),
            }

        return {
            "mode": self.mode,
            "watchers": len(self.watchers),
            "connected_s": connected_s,
            "window_s": window,
            "updates_posted": self.updates_posted,
            "updates_answered": len(self.post_ms),
            "post_errors": self.post_errors,
            "post_ms": stats(self.post_ms),
            "changes_seen": self.changes_seen,
            "unseen_updates": len(unseen),
            "closed_by_server": closed,
            "posted_to_seen_ms": stats(self.posted_to_seen),
            "appended_to_seen_ms": stats(self.appended_to_seen),
            "server_cpu_s": cpu1 - cpu0,
            "load_cpu_s": own1 - own0,
        }


def main() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    spec = json.load(sys.stdin)
    result = asyncio.run(Bench(spec).run())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
