"""Shared helpers for the benchmarks: medians over repeats, machine facts, a table."""

from __future__ import annotations

import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import NamedTuple


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


def paired_ratio(
    baseline: Callable[[], object],
    candidate: Callable[[], object],
    *,
    baseline_calls: int,
    candidate_calls: int,
    repeats: int = 11,
) -> tuple[float, float, float]:
    """Median per-call times and the median of per-repeat ratios (baseline / candidate).

    Each repeat times both sides back to back, so a noisy neighbour slows both
    alike and the ratio stays fair on a 2-core machine.
    """
    b_samples, c_samples, ratios = [], [], []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(baseline_calls):
            baseline()
        b = (time.perf_counter() - start) / baseline_calls
        start = time.perf_counter()
        for _ in range(candidate_calls):
            candidate()
        c = (time.perf_counter() - start) / candidate_calls
        b_samples.append(b)
        c_samples.append(c)
        ratios.append(b / c)
    return statistics.median(b_samples), statistics.median(c_samples), statistics.median(ratios)


class Paired(NamedTuple):
    """What :func:`paired_times` measured (seconds per call; ratios baseline / candidate)."""

    baseline: float
    candidate: float
    #: The median of the per-repeat ratios, and their lowest and highest.
    ratio: float
    ratio_low: float
    ratio_high: float
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
    """Like :func:`paired_ratio`, with the garbage collector handled the same for both sides.

    Each repeat times both sides back to back (a noisy neighbour slows both
    alike) and alternates which goes first (so drift favours neither). Before
    every timed block ``gc.collect()`` runs outside the timing, so neither side
    pays for collecting the other's garbage; inside the blocks the collector
    runs as in production (``gc_enabled=True``) or is off for both sides.
    """
    was_enabled = gc.isenabled()
    b_samples, c_samples, ratios = [], [], []
    b_gcs = c_gcs = 0

    def timed(fn: Callable[[], object], calls: int) -> tuple[float, int]:
        gc.collect()
        if gc_enabled:
            gc.enable()
        else:
            gc.disable()
        before = _collections()
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        elapsed = time.perf_counter() - start
        return elapsed / calls, _collections() - before

    try:
        for i in range(repeats):
            if i % 2 == 0:
                b, b_gc = timed(baseline, baseline_calls)
                c, c_gc = timed(candidate, candidate_calls)
            else:
                c, c_gc = timed(candidate, candidate_calls)
                b, b_gc = timed(baseline, baseline_calls)
            b_samples.append(b)
            c_samples.append(c)
            ratios.append(b / c)
            b_gcs += b_gc
            c_gcs += c_gc
    finally:
        if was_enabled:
            gc.enable()
        else:
            gc.disable()
    return Paired(
        statistics.median(b_samples),
        statistics.median(c_samples),
        statistics.median(ratios),
        min(ratios),
        max(ratios),
        repeats,
        b_gcs / (repeats * baseline_calls),
        c_gcs / (repeats * candidate_calls),
    )
