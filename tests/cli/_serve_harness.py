"""``clipjobs serve`` as a real subprocess: start it, learn its URL, stop or kill it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from attrs import define, field

STARTUP_LIMIT_S = 60.0


def serve_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A clean environment for ``clipjobs serve``: no inherited CLIPJOBS_/SUNO_ settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CLIPJOBS_", "SUNO_", "PUBLIC_BASE_URL"))
    }
    env.update(
        {
            "CLIPJOBS_DB": f"sqlite:///{tmp_path / 'clipjobs.db'}",
            "CLIPJOBS_PORT": "0",
            "CLIPJOBS_MEDIA_DIR": str(tmp_path / "media"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


@define
class ServeProcess:
    proc: asyncio.subprocess.Process
    stderr_path: Path
    lines: list[str] = field(factory=list)
    url: str = ""
    _reader: asyncio.Task[None] | None = None

    @property
    def stdout(self) -> str:
        return "\n".join(self.lines)

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

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

    async def _read_until_listening(self) -> None:
        assert self.proc.stdout is not None
        while True:
            raw = await self.proc.stdout.readline()
            if not raw:
                raise RuntimeError(f"clipjobs serve exited early:\n{self.stdout}\n{self.stderr}")
            line = raw.decode().rstrip("\n")
            self.lines.append(line)
            if "listening on " in line:
                self.url = line.split("listening on ", 1)[1].strip()
                break
        self._reader = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            self.lines.append(raw.decode().rstrip("\n"))

    async def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        code = await asyncio.wait_for(self.proc.wait(), 30)
        if self._reader is not None:
            await asyncio.wait_for(self._reader, 5)
        return code


async def run_cli(*args: str, env: Mapping[str, str]) -> tuple[int, str, str]:
    """Run ``python -m clipjobs_cli ARGS`` to completion: exit code, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "clipjobs_cli",
        *args,
        env=dict(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@contextlib.asynccontextmanager
async def serving(env: Mapping[str, str], tmp_path: Path) -> AsyncIterator[ServeProcess]:
    """``clipjobs serve`` running until the block ends (then SIGTERM, SIGKILL if it hangs)."""
    stderr_path = tmp_path / f"serve-{len(list(tmp_path.glob('serve-*')))}.err"
    with stderr_path.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "clipjobs_cli",
            "serve",
            env=dict(env),
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )
    server = ServeProcess(proc, stderr_path)
    try:
        await asyncio.wait_for(server._read_until_listening(), STARTUP_LIMIT_S)
        yield server
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, TimeoutError):
                await server.stop()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
