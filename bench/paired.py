"""Two revisions' product figures, paired: GET req/s and appends/s of OLD against NEW.

    python bench/paired.py OLD NEW [--pairs 3] [--quick] [--json PATH]

Issue 16 asks that the bench figures be "not worse than today's beyond noise:
paired against the previous commit, GET and appends each within 10%". This
script measures exactly that, on this machine, in one run:

- OLD and NEW (anything ``git rev-parse`` takes: a hash, a branch, ``HEAD~1``)
  are each checked out with ``git worktree add --detach`` into a temporary
  directory; both worktrees are removed at the end, whatever happened.
- Each revision runs its OWN bench scripts with its own library:
  ``PYTHONPATH=<worktree>/src:<worktree>/adapters``, then the ``PYTHONPATH``
  this script was started with, if any; the interpreter is this one
  (``sys.executable``, so the same installed packages). Before any figure, a
  check prints ``clipjobs.__file__`` as each revision imports it and stops if it
  is not inside that revision's worktree (an editable install could win
  otherwise) or if the revision does not import at all. A revision that needs a
  package this interpreter lacks (8d8fa75's clipjobs_sqlite still needs
  aiosqlite) gets it from a directory on ``PYTHONPATH``, e.g.
  ``pip install --target /tmp/paired-deps "aiosqlite>=0.20,<0.23"``.
- A pair is one run of each revision of bench/bench_http.py (the figure: GET
  job, 64 connections, req/s: ``get.clipjobs_rps`` of its ``--json``) and of
  bench/bench_sqlite.py (appends/s of 100 jobs appending at once:
  ``appends.clipjobs_appends_per_s``). The order alternates, OLD then NEW in
  the first pair, NEW then OLD in the second, and so on, so a drift in the
  machine's load falls on both sides. Revisions back to 8d8fa75 write these
  figures under the same names; a revision whose bench has no ``--json`` or
  other names stops the run with the keys it did write.
- Printed: per pair and figure, OLD's value, NEW's, NEW/OLD; then the median
  of the NEW/OLD ratios per figure, and whether it is within 10% (>= 0.90).
  The verdict is for reading: the exit code is 0 whenever every bench ran,
  1 if one failed.
- Written (``--json``, default bench/results/paired.json): the revisions as
  given, their commit hashes and subjects, where each imported clipjobs from,
  the machine (bench/_common.machine) and load average at the start, every
  value of every pair with its order and seconds, and the median ratios.

``--quick`` runs each bench at its smallest size (bench_http.py ``--quick``,
bench_sqlite.py ``--repeats 1 --load-calls 200``): a smoke test of this script,
its figures mean nothing. At full size one run of bench_http.py takes about
110 s and one of bench_sqlite.py about 30 s on the 2-core reference machine,
so a pair takes about 4.5 minutes and the default 3 pairs about 14 minutes.
Run it on a quiet machine: other processes are noise both sides share only
while they last.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import machine, table  # noqa: E402 -- after the path insert

#: figure -> (bench script, where its --json holds the figure, extra args at --quick).
#: Each place is a path of keys; the first one present is read (room for a renamed figure).
FIGURES: dict[str, tuple[str, list[tuple[str, ...]], list[str]]] = {
    "get_rps": ("bench_http.py", [("get", "clipjobs_rps")], ["--quick"]),
    "appends_per_s": (
        "bench_sqlite.py",
        [("appends", "clipjobs_appends_per_s")],
        ["--repeats", "1", "--load-calls", "200"],
    ),
}
#: Issue 16: NEW may be at most 10% worse than OLD.
WORST_RATIO = 0.90
#: No bench run may hang the comparison (a full bench_http.py takes about 110 s).
TIMEOUT_S = 900


def git(*args: str, cwd: Path = HERE) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout.strip()


def revision_env(tree: Path) -> dict[str, str]:
    """This process's environment with the revision's library first on the path, then
    whatever ``PYTHONPATH`` this script was given (packages an old revision needs).
    """
    paths = [str(tree / "src"), str(tree / "adapters")]
    if os.environ.get("PYTHONPATH"):
        paths.append(os.environ["PYTHONPATH"])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def imported_from(tree: Path) -> str:
    """Where the revision's interpreter finds clipjobs; it must be the revision's own tree."""
    done = subprocess.run(
        [sys.executable, "-c", "import clipjobs, clipjobs_sqlite; print(clipjobs.__file__)"],
        cwd=tree,
        env=revision_env(tree),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(
            f"the revision at {tree} does not import here (does it need a package this"
            f" interpreter lacks? put it on PYTHONPATH):\n{done.stderr[-2000:]}"
        )
    found = done.stdout.strip()
    if not Path(found).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"clipjobs comes from {found}, not from the revision at {tree}")
    return found


def figure_of(figures: dict[str, Any], places: list[tuple[str, ...]], what: str) -> float:
    for place in places:
        value: Any = figures
        for key in place:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, int | float):
            return float(value)
    raise SystemExit(f"{what}: none of {places} in its --json (keys: {sorted(figures)})")


def run_bench(tree: Path, name: str, quick: bool, label: str) -> tuple[float, float]:
    """Run the revision's own bench for figure ``name``; (the figure, seconds taken)."""
    script, places, quick_args = FIGURES[name]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp, "figures.json")
        cmd = [sys.executable, str(tree / "bench" / script), *(quick_args if quick else [])]
        started = time.perf_counter()
        done = subprocess.run(
            [*cmd, "--json", str(out)],
            cwd=tree,
            env=revision_env(tree),
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
        seconds = time.perf_counter() - started
        if done.returncode != 0 or not out.exists():
            print(done.stdout[-2000:] + done.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"{label}'s {script} failed (exit code {done.returncode})")
        value = figure_of(json.loads(out.read_text()), places, f"{label}'s {script}")
    return value, seconds


def compare(trees: dict[str, Path], pairs: int, quick: bool) -> list[dict[str, Any]]:
    results = []
    for i in range(pairs):
        order = ["old", "new"] if i % 2 == 0 else ["new", "old"]
        pair: dict[str, Any] = {"pair": i + 1, "order": order}
        for name in FIGURES:
            values: dict[str, float] = {}
            seconds: dict[str, float] = {}
            for side in order:
                values[side], seconds[side] = run_bench(trees[side], name, quick, side.upper())
                print(
                    f"pair {i + 1}, {side.upper()}: {name} {values[side]:,.0f}"
                    f" ({seconds[side]:.0f} s)",
                    flush=True,
                )
            pair[name] = {
                **values,
                "ratio": values["new"] / values["old"],
                "seconds": {k: round(v, 1) for k, v in seconds.items()},
            }
        results.append(pair)
    return results


def report(results: list[dict[str, Any]], medians: dict[str, float]) -> str:
    rows: list[tuple[str, ...]] = [("figure", "pair", "order", "OLD", "NEW", "NEW/OLD")]
    for name in FIGURES:
        for pair in results:
            f = pair[name]
            order = ",".join(side.upper() for side in pair["order"])
            old, new = f"{f['old']:,.0f}", f"{f['new']:,.0f}"
            rows.append((name, str(pair["pair"]), order, old, new, f"{f['ratio']:.3f}"))
        within = "yes" if medians[name] >= WORST_RATIO else "NO"
        rows.append((name, "median", "", "", "", f"{medians[name]:.3f} (within 10%: {within})"))
    return table(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("old", help="the revision to compare against (e.g. HEAD~1)")
    parser.add_argument("new", help="the revision measured (e.g. HEAD)")
    parser.add_argument("--pairs", type=int, default=3, help="pairs of runs (default 3)")
    parser.add_argument("--quick", action="store_true", help="smallest sizes: a smoke test")
    parser.add_argument("--json", default=str(HERE / "results" / "paired.json"))
    args = parser.parse_args()
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")

    revisions = {"old": args.old, "new": args.new}
    commits = {
        side: git("rev-parse", "--verify", f"{rev}^{{commit}}") for side, rev in revisions.items()
    }
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_avg = [round(x, 2) for x in os.getloadavg()]
    tmp = Path(tempfile.mkdtemp(prefix="clipjobs-paired-"))
    trees: dict[str, Path] = {}
    try:
        for side, commit in commits.items():
            tree = tmp / side
            git("worktree", "add", "--detach", str(tree), commit)
            trees[side] = tree
        imports = {side: imported_from(tree) for side, tree in trees.items()}
        for side in trees:
            rev = f"{side.upper()} = {revisions[side]} = {commits[side][:12]}"
            print(f"{rev}: clipjobs from {imports[side]}")
        print(f"# {machine()}; load average at start {load_avg}", flush=True)
        results = compare(trees, args.pairs, args.quick)
    finally:
        for tree in trees.values():
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(tree)], cwd=HERE, check=False
            )
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run(["git", "worktree", "prune"], cwd=HERE, check=False)

    medians = {name: statistics.median(p[name]["ratio"] for p in results) for name in FIGURES}
    print()
    print(
        f"# {args.pairs} pair(s), order alternating"
        + ("; --quick: smoke sizes, the figures mean nothing" if args.quick else "")
    )
    print(report(results, medians))
    record = {
        "when": started,
        "quick": args.quick,
        "revisions": revisions,
        "commits": commits,
        "subjects": {side: git("log", "-1", "--format=%s", c)[:200] for side, c in commits.items()},
        "clipjobs_imported_from": imports,
        "machine": machine(),
        "load_avg_at_start": load_avg,
        "figures": {
            name: {"bench": f"bench/{script}", "read_from": [".".join(p) for p in places]}
            for name, (script, places, _) in FIGURES.items()
        },
        "pairs": results,
        "median_ratio": medians,
        "worst_ratio_allowed": WORST_RATIO,
    }
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
