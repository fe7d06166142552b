"""clipjobs_suno's public surface is deliberate, and the client does not drag the fake in."""

from __future__ import annotations

import re
import subprocess
import sys
import types
from pathlib import Path

import clipjobs_suno
import clipjobs_suno.fake


def _public(module: types.ModuleType) -> set[str]:
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and getattr(value, "__module__", module.__name__).startswith("clipjobs_suno")
    }


def test_all_lists_exactly_the_public_names() -> None:
    """``__all__`` of the package and of ``fake`` names exactly what they define for users."""
    assert set(clipjobs_suno.__all__) == _public(clipjobs_suno) | {
        "DEFAULT_BASE_URL",
        "MODELS",
        "NON_CUSTOM_PROMPT_MAX",
    }
    assert set(clipjobs_suno.fake.__all__) == {
        "SCENARIOS",
        "Arrival",
        "FakeConfig",
        "FakeSuno",
        "running_fake_suno",
        "serve_fake",
    }
    assert all(hasattr(clipjobs_suno.fake, name) for name in clipjobs_suno.fake.__all__)


def test_importing_the_client_does_not_load_the_fake() -> None:
    """A production process importing clipjobs_suno does not load the fake server."""
    code = "import sys, clipjobs_suno; print('clipjobs_suno.fake' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_readme_example_runs(tmp_path: Path) -> None:
    """The adapter README's python block runs against the fake and prints the audio URLs."""
    text = (Path(clipjobs_suno.__file__).parent / "README.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)```", text, re.S)
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "credits: 100" in out.stdout and ".mp3" in out.stdout
