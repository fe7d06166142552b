"""Process-wide counters and histograms, rendered as Prometheus text.

Kept in the core (standard library only) so the service and the workers can
count what they do; the HTTP adapter only serves :meth:`Metrics.render`.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable
from typing import ClassVar

__all__ = ["Metrics", "histogram_text"]

_DURATION_BUCKETS = (0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    body = ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in pairs
    )
    return "{" + body + "}" if body else ""


class _Histogram:
    def __init__(self) -> None:
        self.counts = [0] * (len(_DURATION_BUCKETS) + 1)
        self.total = 0.0
        self.n = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(_DURATION_BUCKETS, value)] += 1
        self.total += value
        self.n += 1


class Metrics:
    """The metrics of SPEC/issue 5: jobs, stage durations, callbacks, Suno calls."""

    _HELP: ClassVar[dict[str, tuple[str, str]]] = {
        "clipjobs_jobs_started_total": ("counter", "Jobs accepted."),
        "clipjobs_jobs_finished_total": ("counter", "Jobs that reached a terminal stage."),
        "clipjobs_stage_entered_total": ("counter", "Jobs that entered a stage."),
        "clipjobs_stage_duration_seconds": (
            "histogram",
            "Time spent in a stage before leaving it.",
        ),
        "clipjobs_callbacks_total": ("counter", "Suno callbacks received, by result."),
        "clipjobs_suno_calls_total": ("counter", "Calls to Suno, by endpoint and code."),
        "clipjobs_http_requests_total": ("counter", "HTTP requests, by route and status."),
        "clipjobs_webhook_attempts_total": (
            "counter",
            "Webhook delivery attempts, by outcome (delivered, pending: retried later, failed).",
        ),
    }

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self._histograms: dict[tuple[str, tuple[tuple[str, str], ...]], _Histogram] = {}

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            self._counters[key] = self._counters.get(key, 0.0) + amount

    def observe(self, name: str, value: float, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            hist = self._histograms.get(key)
            if hist is None:
                hist = self._histograms[key] = _Histogram()
            hist.observe(value)

    def value(self, name: str, **labels: str) -> float:
        """A counter's value (0 when never counted); for tests and the CLI."""
        return self._counters.get((name, tuple(sorted(labels.items()))), 0.0)

    def render(self, gauges: dict[str, float] | None = None) -> str:
        """Prometheus text exposition format 0.0.4."""
        out: list[str] = []
        with self._lock:
            names = sorted({k[0] for k in self._counters} | {k[0] for k in self._histograms})
            for name in names:
                kind, help_text = self._HELP.get(name, ("counter", name))
                out.append(f"# HELP {name} {help_text}")
                out.append(f"# TYPE {name} {kind}")
                for (n, labels), value in sorted(self._counters.items()):
                    if n == name:
                        out.append(f"{name}{_labels(labels)} {value:g}")
                for (n, labels), hist in sorted(self._histograms.items(), key=lambda kv: kv[0]):
                    if n != name:
                        continue
                    running = 0
                    for bound, count in zip(_DURATION_BUCKETS, hist.counts, strict=False):
                        running += count
                        out.append(
                            f"{name}_bucket{_labels((*labels, ('le', f'{bound:g}')))} {running}"
                        )
                    out.append(f"{name}_bucket{_labels((*labels, ('le', '+Inf')))} {hist.n}")
                    out.append(f"{name}_sum{_labels(labels)} {hist.total:g}")
                    out.append(f"{name}_count{_labels(labels)} {hist.n}")
        for name, value in sorted((gauges or {}).items()):
            out.append(f"# TYPE {name} gauge")
            out.append(f"{name} {value:g}")
        return "\n".join(out) + "\n"


def histogram_text(
    name: str, help_text: str, values: Iterable[float], buckets: tuple[float, ...]
) -> str:
    """A histogram of ``values`` measured now (not accumulated), in the exposition format.

    For things read off a snapshot, such as how many jobs each user has waiting:
    the distribution needs no label per user, so the label count stays bounded.
    """
    counts = [0] * (len(buckets) + 1)
    total, n = 0.0, 0
    for value in values:
        counts[bisect.bisect_left(buckets, value)] += 1
        total += value
        n += 1
    out = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
    running = 0
    for bound, count in zip(buckets, counts, strict=False):
        running += count
        out.append(f'{name}_bucket{{le="{bound:g}"}} {running}')
    out += [f'{name}_bucket{{le="+Inf"}} {n}', f"{name}_sum {total:g}", f"{name}_count {n}"]
    return "\n".join(out) + "\n"
