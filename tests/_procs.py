"""``clipjobs serve`` as a real subprocess against the fake Suno, shared by the crash tests
(tests/e2e), the PostgreSQL fleets (tests/postgres, and ``bench/bench_budget_pg.py`` through
``_budget_fleet.py``) and ``serve``'s own tests (tests/cli/_serve_harness.py).

``process_env`` (or, for ``serve``'s own defaults, ``clean_env``) is the environment it starts
with; ``Serve`` starts it, waits until it listens, keeps what it prints, and stops it or kills it
with SIGKILL, for as many lives as a test wants on the same settings. ``CallLog`` records every
API call the fake Suno answers, when it came and how it was answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path

import aiohttp
from aiohttp import web
from attrs import define, field

from clipjobs.app.budget import busiest

#: The one user of a served process, and the fake Suno's key it sends with.
TOKEN = "serve-token-0001"
USER = "serve-user"
SUNO_KEY = "serve-suno-key"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}

#: How long a life may take to print "listening on" (a loaded machine, a migration).
STARTUP_LIMIT_S = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**settings: str) -> dict[str, str]:
    """This process's environment without its CLIPJOBS_, SUNO_ and PUBLIC_BASE_URL settings, with
    unbuffered output (lines arrive as they are printed) and ``settings``.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CLIPJOBS_", "SUNO_", "PUBLIC_BASE_URL"))
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(settings)
    return env


def process_env(url: str, fake_url: str, db_url: str, **extra: str) -> dict[str, str]:
    """The environment of a ``clipjobs serve`` at ``url`` on ``db_url`` against the fake Suno, for
    ``TOKEN``'s ``USER``, logging warnings only.

    Everything else is the default, unless ``extra`` sets it (``CLIPJOBS_...=value``).
    """
    settings = {
        "CLIPJOBS_DB": db_url,
        "CLIPJOBS_PORT": url.rsplit(":", 1)[1],
        "PUBLIC_BASE_URL": url,
        "CLIPJOBS_TOKENS": f"{TOKEN}={USER}",
        "SUNO_API_KEY": SUNO_KEY,
        "SUNO_BASE_URL": fake_url,
        "CLIPJOBS_LOG_LEVEL": "WARNING",
    }
    return clean_env(**{**settings, **extra})


class Serve:
    """``clipjobs serve``, one life after another on the same settings (so port and database).

    A life runs in ``logs`` (relative defaults such as ./media land there) and writes its stderr
    to ``logs/{name}-{life}.err``; its stdout lines are kept in ``lines`` and the URL it said it
    listens on in ``url``.
    """

    def __init__(self, env: Mapping[str, str], logs: Path, name: str = "serve") -> None:
        self.env = dict(env)
        self.logs = logs
        self.name = name
        self.proc: asyncio.subprocess.Process | None = None
        self.lives = 0
        self.lines: list[str] = []
        self.url = ""
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the next life and wait until it listens."""
        self.lives += 1
        self.lines = []
        with self._log().open("wb") as stderr:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "clipjobs_cli",
                "serve",
                env=self.env,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                cwd=self.logs,
            )
        stdout = self.proc.stdout
        assert stdout is not None
        line = ""
        async with asyncio.timeout(STARTUP_LIMIT_S):
            while "listening on " not in line:
                line = await self._readline(stdout)
        self.url = line.split("listening on ", 1)[1].strip()
        self._reader = asyncio.create_task(self._drain(stdout))

    @property
    def stdout(self) -> str:
        return "\n".join(self.lines)

    @property
    def stderr(self) -> str:
        """What this life wrote to stderr so far: its log."""
        return self._log().read_text(errors="replace")

    def line_with(self, text: str) -> str:
        return next(line for line in self.lines if text in line)

    async def line_soon(self, text: str, timeout: float = 10.0) -> str:
        """The first line with ``text``, waiting for it: lines printed after "listening on"
        (the demo link) may still be on their way when the server starts answering.
        """
        async with asyncio.timeout(timeout):
            while True:
                for line in self.lines:
                    if text in line:
                        return line
                await asyncio.sleep(0.02)

    async def kill(self) -> int:
        """SIGKILL: no drain, no cleanup, mid-whatever. The exit code (``-SIGKILL``)."""
        assert self.proc is not None
        self.proc.kill()
        return await self._reap()

    async def stop(self, sig: int = signal.SIGTERM) -> int:
        """Ask it to stop (SIGTERM: drain and exit) and wait up to 30 s. The exit code."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        return await self._reap()

    async def ensure_dead(self) -> None:
        """For a ``finally``: SIGKILL a life that still runs."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            with contextlib.suppress(TimeoutError):
                await self._reap()

    async def close(self) -> None:
        """For a ``finally``: stop a life that still runs, SIGKILL it if it hangs."""
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, TimeoutError):
                await self.stop()
        await self.ensure_dead()

    def _log(self) -> Path:
        return self.logs / f"{self.name}-{self.lives}.err"

    async def _readline(self, stdout: asyncio.StreamReader) -> str:
        raw = await stdout.readline()
        if not raw:
            raise RuntimeError(
                f"clipjobs serve exited early:\n{self.stdout}\n{self.stderr[-3000:]}"
            )
        line = raw.decode(errors="replace").rstrip("\n")
        self.lines.append(line)
        return line

    async def _drain(self, stdout: asyncio.StreamReader) -> None:
        async for raw in stdout:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    async def _reap(self) -> int:
        assert self.proc is not None
        code = await asyncio.wait_for(self.proc.wait(), 30)
        if self._reader is not None:
            await asyncio.wait_for(self._reader, 5)
        return code


async def run_once(http: aiohttp.ClientSession, url: str, channel: str, token: str = TOKEN) -> str:
    """runOnce on ``channel`` at the server at ``url``, which must answer 202: the new job's id."""
    async with http.post(
        f"{url}/api/music-clips/channels/{channel}/runOnce",
        headers={"Authorization": f"Bearer {token}"},
    ) as response:
        assert response.status == 202, await response.text()
        return str((await response.json())["jobId"])


@contextlib.asynccontextmanager
async def running(servers: list[Serve]) -> AsyncIterator[list[Serve]]:
    """Start every one of ``servers`` at once and wait until all listen; when the block ends,
    stop those still running (SIGKILL for one that hangs).
    """
    try:
        await asyncio.gather(*(server.start() for server in servers))
        yield servers
    finally:
        await asyncio.gather(*(server.close() for server in servers))


# --- what the fake Suno answered -------------------------------------------------------


@define
class Call:
    """One Suno API call as the fake saw it."""

    at: float  # time.monotonic() when it arrived, just before the fake's rate limiter
    endpoint: str  # generate, record-info, credit
    code: int | None  # the envelope's code the fake answered


@define
class CallLog:
    """A middleware for the fake's app: every API call, when it came and what it was answered."""

    calls: list[Call] = field(factory=list)

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        # Taken with no await before the fake's limiter runs: the same order, microseconds apart.
        at = time.monotonic()
        response = await handler(request)
        if request.path.startswith("/api/v1/") and isinstance(response, web.Response):
            code = None
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                code = json.loads(response.text or "null").get("code")
            self.calls.append(Call(at, request.path.rsplit("/", 1)[-1], code))
        return response

    def codes(self, endpoint: str | None = None) -> Counter[int | None]:
        return Counter(c.code for c in self.calls if endpoint in (None, c.endpoint))

    def peak(self, window_s: float, *, admitted_only: bool = True) -> int:
        """The most calls that came within any ``window_s`` (by default those not refused 430)."""
        return busiest((c.at for c in self.calls if not admitted_only or c.code != 430), window_s)
