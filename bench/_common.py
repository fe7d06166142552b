"""Shared helpers for the benchmarks: medians over repeats, machine facts, a table."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable


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
