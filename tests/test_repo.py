"""The repository keeps its promises: CI runs README's command, docs match the code."""

from __future__ import annotations

import re
from pathlib import Path

import clipjobs

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.+?)\n```", text)


def test_readme_opens_with_two_commands() -> None:
    """README's first two code blocks are the run command and the test command."""
    run, test = _readme_commands()[:2]
    assert "clipjobs serve" in run
    assert "pytest" in test


def test_ci_runs_readme_test_command_verbatim() -> None:
    """.ci/run contains README's test command as one line, unchanged."""
    test = _readme_commands()[1]
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test in lines


def test_architecture_diagram_matches_machine() -> None:
    """docs/architecture.md's Mermaid stage diagram is the one generated from the machine."""
    doc = (ROOT / "docs" / "architecture.md").read_text()
    block = re.search(
        r"<!-- stage-diagram:start -->\n```mermaid\n(.*?)```\n<!-- stage-diagram:end -->",
        doc,
        re.S,
    )
    assert block is not None, "the stage diagram markers are missing"
    assert block.group(1) == clipjobs.mermaid(), (
        "docs/architecture.md is stale: paste clipjobs.mermaid() between the markers"
    )
