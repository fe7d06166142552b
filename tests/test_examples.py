"""Every script under examples/ is run by a test, as a user would run it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def _run(example: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-W", "error", str(example)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "error"},
        check=False,
    )


def test_every_example_is_run_by_a_test() -> None:
    """A new example needs a test that runs it (and checks what it prints)."""
    tests = "\n".join(p.read_text() for p in (ROOT / "tests").rglob("test_*.py"))
    assert EXAMPLES
    for example in EXAMPLES:
        assert f'"{example.name}"' in tests, f"no test runs examples/{example.name}"


def test_following_a_job_in_process_prints_every_stage_to_success() -> None:
    result = _run(ROOT / "examples" / "follow_a_job_in_process.py")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0].startswith("serving on http://127.0.0.1:") and "(demo: True)" in lines[0]
    stages = [line.split(": ", 1)[1] for line in lines[1:-1]]
    assert stages[0] == "STAGE_10_REQUEST_ACCEPTED"
    assert stages[-1] == "STAGE_50_SUNO_SUCCESS"
    assert stages == sorted(stages)  # stage numbers never go down
    assert lines[-1].startswith("audio: http://127.0.0.1:") and lines[-1].endswith(".mp3")


def test_embedding_example_prints_the_stage() -> None:
    """Run as a script, the example mounts the API inside a parent app, starts a job through it
    and prints STAGE_10.
    """
    result = _run(ROOT / "examples" / "embed_in_your_app.py")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("runOnce: 202 job_")
    assert lines[1] == "stage: STAGE_10_REQUEST_ACCEPTED"
    assert result.stderr == ""
