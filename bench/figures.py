"""The figures the docs quote, checked against bench/results/latest.json or rewritten.

The documents: docs/benchmarks.md and docs/storage.md (``DOCS``). Every
measured figure in them is a Markdown reference link whose label is its path
in ``latest.json``::

    131x ... becomes [131×][fold.like_for_like.ratio]

The label's first part names the bench, the rest is the path inside that
bench's ``figures`` (list items by index: ``http.run_once.p99s_ms.0``; keys may
hold a hyphen: ``budget_pg.saturated.shares.budget-0``).
Rendered, the figure links to the results file (the label's definition,
which this script keeps at the end of each document); in the source it says
where it came from. The figure is written with as many decimals as the
reader needs, and it must equal the recorded value rounded to those
decimals. Tables whose header has a ``measured`` column may hold no other
numbers in that column.

    python bench/figures.py            # check: list every figure that is not latest.json's
    python bench/figures.py --write    # rewrite each figure from latest.json, same decimals

After ``python bench/run.py``, ``--write`` brings the docs' numbers up to date;
read the prose around them again (a verdict such as "met" is not a figure).
``tests/test_docs.py`` runs the check.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: The documents whose figures this script checks and rewrites.
DOCS = [ROOT / "docs" / "benchmarks.md", ROOT / "docs" / "storage.md"]
RESULTS = ROOT / "bench" / "results" / "latest.json"
#: Where the docs' links point (relative to docs/).
TARGET = "../bench/results/latest.json"

FIGURE = re.compile(r"\[(?P<text>[^\[\]]*\d[^\[\]]*)\]\[(?P<path>[a-z_]+(?:\.[A-Za-z0-9_-]+)+)\]")
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
#: A number standing alone (not the 99 of "p99").
LOOSE = re.compile(r"(?<![\w.,])-?\d[\d,]*(?:\.\d+)?")
DEFINITION = re.compile(r"^\[(?P<path>[a-z_]+(?:\.[A-Za-z0-9_-]+)+)\]: (?P<url>\S+)\s*$", re.M)
BLOCK_START = "<!-- figures: the links below are written by bench/figures.py --write -->"


class FigureError(Exception):
    """A path that names nothing in latest.json, or names something that is not a number."""


def resolve(record: dict[str, Any], path: str) -> float:
    """The number at ``path`` (``bench.key.key…``) in a ``latest.json`` record."""
    bench, *keys = path.split(".")
    try:
        node: Any = record["benches"][bench]["figures"]
    except (KeyError, TypeError):
        raise FigureError(f"{path}: no figures of bench {bench!r} in latest.json") from None
    for key in keys:
        try:
            node = node[int(key)] if isinstance(node, list) else node[key]
        except (KeyError, IndexError, ValueError, TypeError):
            raise FigureError(f"{path}: latest.json has no {key!r} there") from None
    if isinstance(node, bool) or not isinstance(node, int | float):
        raise FigureError(f"{path}: {node!r} is not a number")
    return float(node)


def formatted(value: float, written: str) -> str:
    """``value`` written as ``written`` writes its number: same decimals, thousands commas."""
    decimals = len(written.split(".")[1]) if "." in written else 0
    grouping = "," if "," in written or abs(value) >= 10_000 else ""
    return f"{value:{grouping}.{decimals}f}"


def _number(text: str) -> re.Match[str]:
    found = NUMBER.search(text)
    if found is None:  # FIGURE only matches text with a digit
        raise FigureError(f"no number in {text!r}")
    return found


def figures(doc: str) -> list[tuple[str, str]]:
    """Every ``(text, path)`` figure the document quotes."""
    return [(m["text"], m["path"]) for m in FIGURE.finditer(doc)]


def check(doc: str, record: dict[str, Any]) -> list[str]:
    """What is wrong with the document's figures against ``record`` (nothing: [])."""
    problems: list[str] = []
    if record.get("quick"):
        problems.append("latest.json is from a --quick run: its figures mean nothing")
    for text, path in figures(doc):
        written = _number(text).group()
        try:
            value = resolve(record, path)
        except FigureError as exc:
            problems.append(str(exc))
            continue
        recorded = formatted(value, written)
        if recorded != written:
            problems.append(f"{path}: the docs say {written}, latest.json {recorded}")
    defined = {m["path"]: m["url"] for m in DEFINITION.finditer(doc)}
    for _, path in figures(doc):
        if defined.get(path) != TARGET:
            problems.append(f"{path}: no link definition to {TARGET} (run --write)")
    problems += [f"a measured cell quotes {n} with no path: {cell!r}" for n, cell in _loose(doc)]
    return problems


def _loose(doc: str) -> list[tuple[str, str]]:
    """Numbers in a table's ``measured`` column that are not figures."""
    found: list[tuple[str, str]] = []
    column: int | None = None
    for line in doc.splitlines():
        if not line.startswith("|"):
            column = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if column is None:
            column = next((i for i, c in enumerate(cells) if c.lower() == "measured"), -1)
            continue
        if column < 0 or column >= len(cells) or set(cells[column]) <= set("-: "):
            continue
        rest = FIGURE.sub("", cells[column])
        found += [(n, cells[column]) for n in LOOSE.findall(rest)]
    return found


def write(doc: str, record: dict[str, Any]) -> str:
    """The document with every figure rewritten from ``record`` and the link definitions."""

    def one(m: re.Match[str]) -> str:
        text, path = m["text"], m["path"]
        number = _number(text)
        new = formatted(resolve(record, path), number.group())
        return f"[{text[: number.start()]}{new}{text[number.end() :]}][{path}]"

    doc = FIGURE.sub(one, doc)
    doc = doc.split(BLOCK_START)[0].rstrip("\n")
    paths = sorted({path for _, path in figures(doc)})
    block = [BLOCK_START, "", *(f"[{p}]: {TARGET}" for p in paths)]
    return doc + "\n\n" + "\n".join(block) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the figures from the JSON")
    parser.add_argument("--doc", action="append", help="a document (default: every one of DOCS)")
    parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args()
    record = json.loads(Path(args.results).read_text())
    count, problems = 0, []
    for doc_path in [Path(d) for d in args.doc] if args.doc else DOCS:
        doc = doc_path.read_text()
        if args.write:
            doc = write(doc, record)
            doc_path.write_text(doc)
        count += len(figures(doc))
        problems += [f"{doc_path.name}: {problem}" for problem in check(doc, record)]
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"{count} figures, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
