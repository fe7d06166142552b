"""A small HTTP/1.1 load generator, run in its own process so it never shares the server's loop.

It speaks just enough HTTP for the benches (keep-alive, ``Content-Length``
bodies) over raw asyncio protocols, so the client costs far less per request
than an aiohttp client and the server stays the bottleneck.

Input (stdin, JSON)::

    {"url": "http://127.0.0.1:8080", "connections": 64, "duration_s": 5,
     "warmup_s": 1, "rate": null, "headers": {...},
     "method": "GET", "paths": ["/a", "/b"], "body": null}

``server_pid`` (optional): the server's process, whose CPU time within the window
is reported. ``rate`` null: closed loop (each connection sends its next request when the
last answer arrives; the figure is requests/s). ``rate`` N: open loop, N
requests/s on a fixed schedule; latency counts from the scheduled time, so a
stalled server is not hidden by the client waiting (no coordinated omission).
A path containing ``{n}`` gets a new number for each request (runOnce on new
channels). Output (stdout, JSON): requests, errors, statuses, rps, latency ms.

Every request sent (or, open loop, scheduled) in the window counts in the
latencies, however late its answer: one answered after the window is in
``late`` with its real latency; one still unanswered ``drain_s`` (default 10)
after the window is in ``unfinished`` with the latency it had by then. ``rps``
is the answers received within the window per second of it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import select
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from attrs import define


def settle_answer(buf: bytearray, waiter: asyncio.Future[tuple[int, bytes]] | None) -> None:
    """Once the HTTP/1.1 answer at the front of ``buf`` has all arrived, cut it out and give
    the waiting request its (status, body); an answer without ``Content-Length`` fails it.
    """
    if waiter is None or waiter.done():
        return
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return
    head = bytes(buf[:end]).lower()
    at = head.find(b"\r\ncontent-length:")
    if at < 0:
        waiter.set_exception(ConnectionError("no Content-Length in the answer"))
        return
    line_end = head.find(b"\r\n", at + 2)
    length = int(head[at + 17 : line_end if line_end >= 0 else len(head)])
    total = end + 4 + length
    if len(buf) < total:
        return
    status = int(head[9:12])
    body = bytes(buf[end + 4 : total])
    del buf[:total]
    waiter.set_result((status, body))


class _Conn(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        settle_answer(self.buf, self.waiter)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("the server closed the connection"))

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self.waiter


def _raw(method: str, host: str, path: str, headers: dict[str, str], body: bytes | None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: keep-alive"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    parts = urlsplit(spec["url"])
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    headers: dict[str, str] = spec.get("headers", {})
    method = spec.get("method", "GET")
    body = json.dumps(spec["body"]).encode() if spec.get("body") is not None else None
    paths: list[str] = spec["paths"]
    templated = any("{n}" in p for p in paths)
    prebuilt = None if templated else [_raw(method, parts.netloc, p, headers, body) for p in paths]
    counter = itertools.count()
    rng = random.Random(spec.get("seed", 1))

    def next_request() -> bytes:
        if prebuilt is not None:
            return prebuilt[rng.randrange(len(prebuilt))]
        path = rng.choice(paths).replace("{n}", str(next(counter)))
        return _raw(method, parts.netloc, path, headers, body)

    loop = asyncio.get_running_loop()
    conns: list[_Conn] = []
    for _ in range(spec.get("connections", 1)):
        _, proto = await loop.create_connection(_Conn, host, port)
        conns.append(proto)

    warmup = float(spec.get("warmup_s", 0.0))
    duration = float(spec["duration_s"])
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + duration
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    errors = answered_in_window = late = 0
    rate = spec.get("rate")
    queue: asyncio.Queue[float | None] = asyncio.Queue()
    #: Requests of the window still waiting for their answer: id -> when sent (or scheduled).
    in_flight: dict[int, float] = {}
    ids = itertools.count()

    async def one(conn: _Conn, sent: float) -> bool:
        nonlocal errors, answered_in_window, late
        counted = sent >= measure_from
        key = next(ids)
        if counted:
            in_flight[key] = sent
        try:
            status, _ = await conn.request(next_request())
        except ConnectionError:
            in_flight.pop(key, None)
            errors += 1
            return False
        done = time.perf_counter()
        if counted:
            # Answered after the window: slow, so it counts (with its latency), never dropped.
            del in_flight[key]
            latencies.append(done - sent)
            statuses[str(status)] = statuses.get(str(status), 0) + 1
            if done <= stop_at:
                answered_in_window += 1
            else:
                late += 1
        return True

    async def closed_loop(conn: _Conn) -> None:
        while time.perf_counter() < stop_at:
            if not await one(conn, time.perf_counter()):
                return

    async def open_loop(conn: _Conn) -> None:
        while (scheduled := await queue.get()) is not None:
            if not await one(conn, scheduled):
                return

    async def schedule() -> None:
        interval = 1.0 / float(rate)
        due = start
        while due < stop_at:
            now = time.perf_counter()
            while due <= now and due < stop_at:
                queue.put_nowait(due)
                due += interval
            await asyncio.sleep(max(0.0, min(due - time.perf_counter(), 0.005)))
        for _ in conns:
            queue.put_nowait(None)

    server_pid = spec.get("server_pid")

    async def cpu_over_window() -> tuple[float, float]:
        """The server's and this process's CPU seconds within the window."""
        await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
        server0 = cpu_seconds(server_pid) if server_pid else 0.0
        own0 = time.process_time()
        await asyncio.sleep(max(0.0, stop_at - time.perf_counter()))
        server1 = cpu_seconds(server_pid) if server_pid else 0.0
        return server1 - server0, time.process_time() - own0

    cpu = asyncio.create_task(cpu_over_window())
    if rate is None:
        work = asyncio.gather(*(closed_loop(c) for c in conns))
    else:
        work = asyncio.gather(schedule(), *(open_loop(c) for c in conns))
    # Requests of the window still unanswered at its end get ``drain_s`` more; after that
    # they count with the latency they had when the run gave up on them (a lower bound).
    drain = float(spec.get("drain_s", 10.0))
    unfinished = 0
    try:
        await asyncio.wait_for(work, max(0.0, stop_at - time.perf_counter()) + drain)
    except TimeoutError:
        gave_up = time.perf_counter()
        waiting = list(in_flight.values())
        while not queue.empty():
            scheduled = queue.get_nowait()
            if scheduled is not None and scheduled >= measure_from:
                waiting.append(scheduled)
        latencies.extend(gave_up - sent for sent in waiting)
        unfinished = len(waiting)
    server_cpu_s, load_cpu_s = await cpu
    elapsed = min(time.perf_counter(), stop_at) - measure_from
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()
    ms = [x * 1000 for x in latencies]
    return {
        "requests": len(latencies),
        "errors": errors,
        "statuses": statuses,
        "late": late,
        "unfinished": unfinished,
        "elapsed_s": elapsed,
        "rps": answered_in_window / elapsed if elapsed > 0 else 0.0,
        # CPU seconds within the window: the server's (``server_pid`` given) and this process's.
        "server_cpu_s": server_cpu_s,
        "load_cpu_s": load_cpu_s,
        "latency_ms": {
            "p50": percentile(ms, 50),
            "p90": percentile(ms, 90),
            "p99": percentile(ms, 99),
            "max": max(ms, default=float("nan")),
            "mean": statistics.fmean(ms) if ms else float("nan"),
        },
    }


# --- what the benches call ------------------------------------------------------------

HERE = Path(__file__).resolve().parent


@define
class Server:
    """A ``_server.py`` subprocess and the JSON line it announced."""

    proc: subprocess.Popen[str]
    info: dict[str, Any]

    @property
    def url(self) -> str:
        return str(self.info["url"])

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 3.0) -> None:
        """Stop it (SIGKILL if it is still draining after ``timeout``: the figures are in)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def start(what: str, *args: str, log: Path | None = None, timeout: float = 120.0) -> Server:
    """Start ``python bench/_server.py what args…`` and wait for its ready line.

    Its log (stderr) goes to ``log``, or nowhere.
    """
    with open(log or os.devnull, "ab") as stderr:
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "_server.py"), what, *args],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    if not line or time.monotonic() > deadline:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"_server.py {what} did not start (exit code {proc.poll()})")
    return Server(proc, json.loads(line))


def load(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one load in a new process (this file); its JSON result."""
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve())],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def rss_mb(pid: int) -> tuple[float, float]:
    """Resident memory now and its peak (VmRSS, VmHWM) of a process, in MiB, from /proc."""
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


class RssSampler(threading.Thread):
    """Samples a process's resident memory (VmRSS) every 0.5 s, and keeps its peak (VmHWM)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[float] = []
        self.peak = 0.0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.5):
            try:
                now, high = rss_mb(self.pid)
            except (OSError, KeyError):
                return
            self.samples.append(now)
            self.peak = max(self.peak, high)


def get_json(url: str, headers: dict[str, str] | None = None) -> Any:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def main() -> None:
    spec = json.load(sys.stdin)
    print(json.dumps(asyncio.run(run(spec))))


if __name__ == "__main__":
    main()
