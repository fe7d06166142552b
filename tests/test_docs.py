"""Code blocks in README.md and docs/ run, so the docs cannot rot."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

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


# --- the benchmark figures ------------------------------------------------------------


def _figures_module() -> Any:
    """bench/figures.py, the checker the docs' benchmark figures answer to."""
    spec = importlib.util.spec_from_file_location("bench_figures", ROOT / "bench" / "figures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_figures_are_those_of_the_committed_run() -> None:
    """Every figure docs/benchmarks.md and docs/storage.md quote is bench/results/latest.json's
    (rounded as shown), latest.json is a full run, and a measured column quotes nothing else.
    """
    figures = _figures_module()
    assert [d.name for d in figures.DOCS] == ["benchmarks.md", "storage.md"]
    record = json.loads(figures.RESULTS.read_text())
    docs = {d.name: d.read_text() for d in figures.DOCS}
    assert len(figures.figures(docs["benchmarks.md"])) >= 40
    assert len(figures.figures(docs["storage.md"])) >= 20
    assert {name: figures.check(doc, record) for name, doc in docs.items()} == {
        name: [] for name in docs
    }


def test_the_figure_check_finds_what_is_wrong() -> None:
    """A figure that differs from the run, a path the run lacks, a measured cell with a bare
    number, and a missing link definition are each reported; --write puts the numbers right.
    """
    figures = _figures_module()
    record = {
        "quick": False,
        "benches": {"fold": {"figures": {"like": {"ratio": 131.4, "us": [1.236, 161.0]}}}},
    }
    good = (
        "| what | measured |\n|---|---|\n"
        "| fold | [131×][fold.like.ratio] ([1.24][fold.like.us.0] vs [161][fold.like.us.1] µs) |\n"
    )
    assert figures.check(figures.write(good, record), record) == []
    coarser = good.replace("[1.24]", "[1.2]")  # fewer decimals are the writer's choice
    assert figures.check(figures.write(coarser, record), record) == []
    wrong = good.replace("[131×]", "[130×]")
    problems = figures.check(figures.write(good, record).replace(good, wrong), record)
    assert problems == ["fold.like.ratio: the docs say 130, latest.json 131"]
    assert figures.check(wrong, record)[-1].startswith("fold.like.us.1: no link definition")
    assert figures.write(wrong, record).startswith(good)
    loose = good.replace("[161][fold.like.us.1]", "161")
    assert any("measured cell quotes 161" in p for p in figures.check(loose, record))
    unknown = good.replace("fold.like.ratio", "fold.like.speedup")
    assert "fold.like.speedup: latest.json has no 'speedup' there" in figures.check(unknown, record)
    assert figures.check(good, {**record, "quick": True})[0].endswith("mean nothing")
