"""``clipjobs serve`` as a real subprocess: start it, learn its URL, stop or kill it.

The process itself is ``_procs.Serve`` (shared with the crash and multi-process tests); this
module adds ``serve``'s own defaults (a SQLite file and media under the test's directory) and
the CLI's other commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from _procs import Serve, clean_env


def serve_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A clean environment for ``clipjobs serve``: no inherited CLIPJOBS_/SUNO_ settings."""
    settings = {
        "CLIPJOBS_DB": f"sqlite:///{tmp_path / 'clipjobs.db'}",
        "CLIPJOBS_PORT": "0",
        "CLIPJOBS_MEDIA_DIR": str(tmp_path / "media"),
    }
    return clean_env(**{**settings, **extra})


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
async def serving(env: Mapping[str, str], tmp_path: Path) -> AsyncIterator[Serve]:
    """``clipjobs serve`` running until the block ends (then SIGTERM, SIGKILL if it hangs)."""
    server = Serve(env, tmp_path, f"serve-{len(list(tmp_path.glob('serve-*')))}")
    try:
        await server.start()
        yield server
    finally:
        await server.close()
