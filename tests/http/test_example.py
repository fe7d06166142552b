"""examples/embed_in_your_app.py runs and mounts the API inside a parent app."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "embed_in_your_app.py"


def test_embedding_example_prints_the_stage() -> None:
    """Run as a script, the example starts a job through the mounted API and prints STAGE_10."""
    result = subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONWARNINGS": "error"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("runOnce: 202 job_")
    assert lines[1] == "stage: STAGE_10_REQUEST_ACCEPTED"
    assert result.stderr == ""
