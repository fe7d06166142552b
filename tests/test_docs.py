"""Code blocks in README.md and docs/ run, so the docs cannot rot."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _python_blocks() -> list[tuple[str, str]]:
    blocks = []
    for path in DOCS:
        text = path.read_text()
        for index, match in enumerate(re.finditer(r"```python\n(.*?)```", text, re.S)):
            blocks.append((f"{path.name}#{index + 1}", match.group(1)))
    return blocks


@pytest.mark.parametrize(("where", "code"), _python_blocks(), ids=lambda v: v if "#" in v else "")
def test_python_block_runs(where: str, code: str, tmp_path: Path) -> None:
    """Every ```python block in the docs runs to completion in a fresh interpreter."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"{where} failed:\n{result.stderr[-2000:]}"
