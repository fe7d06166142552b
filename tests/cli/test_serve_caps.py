"""Issue 23's bad input at start-up: a per-user cap of 0 or below stops ``clipjobs serve``.

``tests/cli/test_serve.py`` covers ``CLIPJOBS_MAX_ACTIVE_PER_USER=0`` and a negative
``CLIPJOBS_MAX_STARTS_PER_USER_PER_HOUR``; ``tests/core/test_config.py`` covers every case in
``Settings.from_env``. What was left: a negative active cap, through the real command.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _serve_harness import run_cli, serve_env

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]


async def test_a_negative_active_cap_stops_start_up_with_one_line(tmp_path: Path) -> None:
    env = serve_env(tmp_path, CLIPJOBS_MAX_ACTIVE_PER_USER="-1")
    code, out, err = await run_cli("serve", env=env)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("clipjobs: error: ")
    assert "CLIPJOBS_MAX_ACTIVE_PER_USER" in lines[0]
    assert not (tmp_path / "clipjobs.db").exists()
