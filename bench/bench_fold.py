"""Fold of a 10-event job log: the core's table fold vs a `transitions` Machine per job.

Both sides compute the job's stage from the same 10 events; the baseline does it
the way the SPEC forbids (a Machine built per job, one trigger per event), the
core with `clipjobs.fold`, which also computes everything else GET needs.
Goal (issue 2/9): the core is >= 100x faster. Run: python bench/bench_fold.py
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from transitions import Machine

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, paired_ratio, table

from clipjobs import (
    GenerationParams,
    JobAccepted,
    ProviderStatus,
    Source,
    SunoProgressObserved,
    SunoRequestSent,
    SunoSucceeded,
    SunoTaskCreated,
    Track,
    fold,
)
from clipjobs._machine import _TRANSITIONS
from clipjobs.stages import Stage

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def ten_events() -> list[object]:
    at = [T0 + timedelta(seconds=i) for i in range(10)]
    tracks = (Track("a", audio_url="https://cdn/a.mp3"), Track("b", audio_url="https://cdn/b.mp3"))
    events: list[object] = [
        JobAccepted("job_1_abcdef", "ch", "u", "req", GenerationParams(prompt="p"), at[0]),
        SunoRequestSent(1, at[1]),
        SunoTaskCreated("t" * 32, Source.GENERATE, at[2]),
    ]
    for i, status in enumerate(
        [
            ProviderStatus.PENDING,
            ProviderStatus.PENDING,
            ProviderStatus.TEXT_SUCCESS,
            ProviderStatus.TEXT_SUCCESS,
            ProviderStatus.FIRST_SUCCESS,
            ProviderStatus.FIRST_SUCCESS,
        ]
    ):
        events.append(SunoProgressObserved(status, Source.POLL, at[3 + i]))
    events.append(SunoSucceeded(Source.CALLBACK, tracks, at[9]))
    return events


TRIGGERS = {
    SunoRequestSent: "send_request",
    SunoTaskCreated: "create_task",
    SunoProgressObserved: "observe_progress",
    SunoSucceeded: "succeed",
}
_MACHINE_TRANSITIONS = [
    {
        **t,
        "source": [str(s) for s in t["source"]]
        if isinstance(t["source"], list)
        else str(t["source"]),
        "dest": str(t["dest"]),
    }
    for t in _TRANSITIONS
]


class _Job:
    clip_render = False


def machine_per_job(events: list[object]) -> str:
    job = _Job()
    Machine(
        model=job,
        states=[s.value for s in Stage],
        transitions=_MACHINE_TRANSITIONS,
        initial=Stage.REQUEST_ACCEPTED.value,
        auto_transitions=False,
    )
    for event in events[1:]:
        getattr(job, TRIGGERS[type(event)])()
    return job.state  # type: ignore[attr-defined, no-any-return]


def main() -> None:
    events = ten_events()
    assert machine_per_job(events) == fold(events).stage.value  # type: ignore[arg-type]
    baseline, core, ratio = paired_ratio(
        lambda: machine_per_job(events),
        lambda: fold(events),  # type: ignore[arg-type]
        baseline_calls=200,
        candidate_calls=10_000,
    )
    print(f"# fold of a 10-event log — {machine()}")
    print(
        table(
            [
                ("what", "per job", "ratio"),
                ("transitions Machine per job (baseline)", f"{baseline * 1e6:.1f} µs", "1.0x"),
                ("clipjobs.fold (compiled table)", f"{core * 1e6:.1f} µs", f"{ratio:.0f}x"),
            ]
        )
    )
    print(
        f"median of paired ratios over 11 repeats; goal >= 100x: "
        f"{'met' if ratio >= 100 else 'MISSED'} ({ratio:.0f}x)"
    )


if __name__ == "__main__":
    main()
