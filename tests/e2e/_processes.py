"""``clipjobs serve`` as a real subprocess, killed and started again, for the crash tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path


def process_env(
    url: str, fake_url: str, db_url: str, *, token: str, user: str, suno_key: str, **extra: str
) -> dict[str, str]:
    """The environment of a ``clipjobs serve`` at ``url`` on ``db_url`` against the fake Suno.

    Everything else is the default, unless ``extra`` sets it (``CLIPJOBS_...=value``).
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CLIPJOBS_", "SUNO_", "PUBLIC_BASE_URL"))
    }
    env.update(
        {
            "CLIPJOBS_DB": db_url,
            "CLIPJOBS_PORT": url.rsplit(":", 1)[1],
            "PUBLIC_BASE_URL": url,
            "CLIPJOBS_TOKENS": f"{token}={user}",
            "SUNO_API_KEY": suno_key,
            "SUNO_BASE_URL": fake_url,
            "CLIPJOBS_LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
            **extra,
        }
    )
    return env


class Server:
    """One life of ``clipjobs serve`` after another, on the same port and database."""

    def __init__(self, env: dict[str, str], logs: Path, name: str = "serve") -> None:
        self.env = env
        self.logs = logs
        self.name = name
        self.proc: asyncio.subprocess.Process | None = None
        self.lives = 0
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.lives += 1
        with self._log().open("wb") as stderr:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "clipjobs_cli",
                "serve",
                env=self.env,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                cwd=self.logs,  # relative defaults (./media) land in the test's directory
            )
        assert self.proc.stdout is not None
        async with asyncio.timeout(60):
            while True:
                line = (await self.proc.stdout.readline()).decode()
                if not line:
                    err = self._log().read_text()
                    raise AssertionError(f"clipjobs serve exited early:\n{err[-3000:]}")
                if "listening on " in line:
                    break
        self._reader = asyncio.create_task(self._drain(self.proc.stdout))

    def _log(self) -> Path:
        return self.logs / f"{self.name}-{self.lives}.err"

    @staticmethod
    async def _drain(stream: asyncio.StreamReader) -> None:
        while await stream.readline():
            pass

    async def _reap(self) -> int:
        assert self.proc is not None
        code = await asyncio.wait_for(self.proc.wait(), 30)
        if self._reader is not None:
            await asyncio.wait_for(self._reader, 5)
        return code

    async def kill(self) -> int:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL: no drain, no cleanup, mid-whatever
        return await self._reap()

    async def stop(self) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        return await self._reap()

    async def ensure_dead(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            with contextlib.suppress(TimeoutError):
                await self._reap()
