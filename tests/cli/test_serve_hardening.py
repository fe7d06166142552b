"""Issue #24's start-up checks: ``clipjobs serve`` refuses each with one line and exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from _serve_harness import run_cli, serve_env

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SUNO_API_KEY", "abc"),
        ("CLIPJOBS_MAX_CONNECTIONS", "0"),
        ("CLIPJOBS_HEAD_TIMEOUT_S", "never"),
        ("CLIPJOBS_CLIP_HOSTS", "*.com"),
        ("CLIPJOBS_CLIP_HOSTS", "cdn.example:99999"),
    ],
)
async def test_refused_at_start_up_with_one_line(tmp_path: Path, name: str, value: str) -> None:
    """A 3-character Suno key, a zero connection limit, ``*.com`` as a media host: exit 2."""
    code, out, err = await run_cli("serve", env=serve_env(tmp_path, **{name: value}))
    assert (code, out) == (2, "")
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("clipjobs: error: ") and name in lines[0]
    if name == "SUNO_API_KEY":
        assert "abc" not in lines[0]
    assert not (tmp_path / "clipjobs.db").exists()
