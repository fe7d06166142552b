"""Shared helpers for the benchmarks: medians over repeats, machine facts, a table, the CLI."""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

#: Where a PostgreSQL bench finds its server when ``--dsn`` is not given, in this order.
PG_DSN_VARIABLES = ("CLIPJOBS_BENCH_PG_DSN", "CLIPJOBS_TEST_PG_DSN")


def machine() -> str:
    """One line naming where the numbers were measured."""
    return (
        f"{platform.machine()} x{os.cpu_count()} cores, Python {sys.version.split()[0]}, "
        f"{platform.system()} {platform.release()}"
    )


def per_call(fn: Callable[[], object], calls: int, repeats: int = 7) -> float:
    """Median seconds per call of ``fn`` over ``repeats`` runs of ``calls`` calls."""
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - start) / calls)
    return statistics.median(samples)


def table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def verdict(goal_met: bool) -> str:
    """How a bench's table says whether a goal was reached."""
    return "met" if goal_met else "MISSED"


def print_table(title: str, notes: list[str], rows: list[tuple[str, ...]]) -> None:
    """A bench's report: ``# title — machine``, a ``# `` line per note on the method, the table."""
    print(f"# {title} — {machine()}")
    for note in notes:
        print(f"# {note}")
    print(table(rows))


def bench_parser(doc: str, *, quick: bool = True) -> argparse.ArgumentParser:
    """The command line every bench starts from: its docstring's first line as the
    description, ``--json PATH`` and (unless ``quick=False``) ``--quick``.

    bench/run.py passes ``--json`` and the ``--quick`` sizes only to a bench whose
    text names them, so a bench's docstring shows them in its "Run:" line.
    """
    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    if quick:
        parser.add_argument("--quick", action="store_true", help="smallest sizes (smoke test)")
    parser.add_argument("--json", help="also write the figures to this file")
    return parser


def parse_with_dsn(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Parse with a ``--dsn`` option for the PostgreSQL server, which must be named somewhere.

    It defaults to ``CLIPJOBS_BENCH_PG_DSN``, then ``CLIPJOBS_TEST_PG_DSN``.
    """
    default = next((os.environ[v] for v in PG_DSN_VARIABLES if os.environ.get(v)), "")
    parser.add_argument("--dsn", default=default)
    args = parser.parse_args()
    if not args.dsn:
        parser.error("no PostgreSQL: pass --dsn or set " + "/".join(PG_DSN_VARIABLES))
    return args


def write_json(path: str | Path | None, figures: Any) -> None:
    """Write the figures to ``path`` (a bench's ``--json``), if one was given."""
    if path:
        Path(path).write_text(json.dumps(figures, indent=2) + "\n")


class Paired(NamedTuple):
    """What :func:`paired_times` measured: per-call times in seconds, ratios baseline / candidate.

    ``baseline``, ``candidate`` and ``ratio*`` are CPU time (``time.process_time``:
    this process's user + system time, so the time the OS gives other processes
    on a busy machine counts for neither side); ``wall_*`` are the same blocks
    timed with ``time.perf_counter``.
    """

    baseline: float
    candidate: float
    #: The median of the per-repeat ratios, and their lowest and highest.
    ratio: float
    ratio_low: float
    ratio_high: float
    wall_baseline: float
    wall_candidate: float
    wall_ratio: float
    wall_ratio_low: float
    wall_ratio_high: float
    repeats: int
    #: Garbage collections that ran inside the timed blocks, per call of each side.
    baseline_gcs_per_call: float
    candidate_gcs_per_call: float


def _collections() -> int:
    return sum(generation["collections"] for generation in gc.get_stats())


def paired_times(
    baseline: Callable[[], object],
    candidate: Callable[[], object],
    *,
    baseline_calls: int,
    candidate_calls: int,
    repeats: int = 21,
    gc_enabled: bool = True,
) -> Paired:
    """Median per-call times of both sides and the median of per-repeat ratios (baseline /
    candidate), on CPU and wall time, with the GC the same for both sides.

    Each repeat times both sides back to back (a noisy neighbour slows both
    alike, so the ratio stays fair on a 2-core machine) and alternates which
    goes first (so drift favours neither). Before
    every timed block ``gc.collect()`` runs outside the timing, so neither side
    pays for collecting the other's garbage; inside the blocks the collector
    runs as in production (``gc_enabled=True``) or is off for both sides.
    """
    was_enabled = gc.isenabled()
    cpu: tuple[list[float], list[float]] = ([], [])
    wall: tuple[list[float], list[float]] = ([], [])
    gcs = [0, 0]

    def timed(side: int, fn: Callable[[], object], calls: int) -> None:
        gc.collect()
        if gc_enabled:
            gc.enable()
        else:
            gc.disable()
        before = _collections()
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        for _ in range(calls):
            fn()
        wall[side].append((time.perf_counter() - wall_start) / calls)
        cpu[side].append((time.process_time() - cpu_start) / calls)
        gcs[side] += _collections() - before

    try:
        for i in range(repeats):
            if i % 2 == 0:
                timed(0, baseline, baseline_calls)
                timed(1, candidate, candidate_calls)
            else:
                timed(1, candidate, candidate_calls)
                timed(0, baseline, baseline_calls)
    finally:
        if was_enabled:
            gc.enable()
        else:
            gc.disable()
    ratios = [b / c for b, c in zip(*cpu, strict=True)]
    wall_ratios = [b / c for b, c in zip(*wall, strict=True)]
    return Paired(
        statistics.median(cpu[0]),
        statistics.median(cpu[1]),
        statistics.median(ratios),
        min(ratios),
        max(ratios),
        statistics.median(wall[0]),
        statistics.median(wall[1]),
        statistics.median(wall_ratios),
        min(wall_ratios),
        max(wall_ratios),
        repeats,
        gcs[0] / (repeats * baseline_calls),
        gcs[1] / (repeats * candidate_calls),
    )
