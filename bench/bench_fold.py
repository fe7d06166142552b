"""Fold of a 10-event job log: the core's table fold vs a `transitions` Machine per job.

Like with like: both sides turn the same 10 events into the same full
``JobState`` (checked equal before timing). The baseline does it the way the
SPEC forbids: it creates a ``transitions`` Machine for the job, fires one
trigger per event and applies the event's changes to the model with plain
attribute assignments (the cheapest way; ``transitions`` callbacks would only
slow it down). The core calls ``clipjobs.fold``. A second baseline is what a
careful user of ``transitions`` would do instead: one shared Machine built
once, each job added as its model (``add_model``) and removed after. A third,
a Machine per job that fires the triggers and computes nothing but the stage,
is shown for reference.

Timing: the median of paired ratios over 21 repeats, each repeat timing both
sides back to back in alternating order, on CPU time (``time.process_time``:
on a busy 2-core machine, the time the OS hands to other processes would
otherwise land on whichever side it happened to interrupt); the wall-clock
ratio of the same blocks is printed next to it. The garbage collector runs as
in production for both sides, with ``gc.collect()`` before every timed block
so neither pays for the other's garbage; the collections inside the timed
blocks are printed, and so is the ratio with the collector off for both sides.

Goal: none now. Issues 2 and 9 asked for >= 100x; issue 16 retired that goal
with the hand-written fold (a fold runs once per append, never per GET), so the
bench reports the ratio and what a fold costs, and the product-level figures
(GET req/s, appends/s) are what a change to the fold must not worsen.
Run: python bench/bench_fold.py [--json PATH]
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from transitions import Machine

sys.path.insert(0, str(Path(__file__).parent))
from _common import Paired, bench_parser, machine, paired_times, table, write_json

from clipjobs import (
    ClipStep,
    Event,
    GenerationParams,
    JobAccepted,
    JobState,
    ProviderStatus,
    Source,
    SunoProgressObserved,
    SunoRequestSent,
    SunoSucceeded,
    SunoTaskCreated,
    Track,
    fold,
)
from clipjobs.domain._machine import _TRANSITIONS
from clipjobs.domain.stages import Stage
from clipjobs.domain.state import SendState

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def ten_events() -> list[Event]:
    at = [T0 + timedelta(seconds=i) for i in range(10)]
    tracks = (Track("a", audio_url="https://cdn/a.mp3"), Track("b", audio_url="https://cdn/b.mp3"))
    events: list[Event] = [
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
_STATES = [s.value for s in Stage]
#: Provider statuses never go backwards (the same rule as the fold's).
_RANK = dict.fromkeys(ProviderStatus, 3) | {
    ProviderStatus.PENDING: 0,
    ProviderStatus.TEXT_SUCCESS: 1,
    ProviderStatus.FIRST_SUCCESS: 2,
}


class _Job:
    """The model the Machine drives: the job's fields, as the fold computes them."""

    state: str  # set by the Machine

    def __init__(self, e: JobAccepted) -> None:
        self.clip_render = e.policy.clip_render  # the machine's one condition
        self.job_id, self.channel_id, self.user_id = e.job_id, e.channel_id, e.user_id
        self.request_id, self.params, self.policy = e.request_id, e.params, e.policy
        self.idempotency_key, self.fingerprint = e.idempotency_key, e.fingerprint
        self.exclusive = e.exclusive
        self.version = 1
        self.created_at = self.updated_at = self.stage_since = self.progress_at = e.at
        self.task_id: str | None = None
        self.provider_status: ProviderStatus | None = None
        self.tracks: tuple[Track, ...] = ()
        self.error_code: str | None = None
        self.error_message: str | None = None
        self.last_observed_at: datetime | None = None
        self.last_observation_source: Source | None = None
        self.observations = self.late_observations = self.send_attempts = 0
        self.send_state = SendState.NOT_SENT
        self.retry_at: datetime | None = None
        # "clip_step" is also a trigger: the Machine binds a method by that name.
        self.clip_step_: ClipStep | None = None
        self.clip_url: str | None = None

    def apply(self, e: Any) -> None:
        """The event's changes beyond the stage (what the fold does for these types)."""
        cls = type(e)
        if cls is SunoProgressObserved:
            self.last_observed_at, self.last_observation_source = e.at, e.source
            self.observations += 1
            current = self.provider_status
            if current is None or _RANK[e.status] >= _RANK[current]:
                self.provider_status = e.status
            if e.tracks:
                self.tracks = e.tracks
        elif cls is SunoRequestSent:
            self.send_attempts, self.send_state, self.retry_at = (
                e.attempt,
                SendState.IN_FLIGHT,
                None,
            )
        elif cls is SunoTaskCreated:
            self.task_id, self.send_state = e.task_id, SendState.ACKNOWLEDGED
            self.retry_at = self.error_message = None
        elif cls is SunoSucceeded:
            self.last_observed_at, self.last_observation_source = e.at, e.source
            self.observations += 1
            self.provider_status, self.tracks = ProviderStatus.SUCCESS, e.tracks
        else:  # pragma: no cover - the benchmark's log has only these
            raise NotImplementedError(cls.__name__)

    def to_state(self) -> JobState:
        return JobState(
            job_id=self.job_id,
            channel_id=self.channel_id,
            user_id=self.user_id,
            request_id=self.request_id,
            params=self.params,
            policy=self.policy,
            idempotency_key=self.idempotency_key,
            fingerprint=self.fingerprint,
            exclusive=self.exclusive,
            stage=Stage(self.state),
            version=self.version,
            created_at=self.created_at,
            updated_at=self.updated_at,
            stage_since=self.stage_since,
            task_id=self.task_id,
            provider_status=self.provider_status,
            tracks=self.tracks,
            error_code=self.error_code,
            error_message=self.error_message,
            last_observed_at=self.last_observed_at,
            last_observation_source=self.last_observation_source,
            observations=self.observations,
            late_observations=self.late_observations,
            send_attempts=self.send_attempts,
            send_state=self.send_state,
            retry_at=self.retry_at,
            clip_step=self.clip_step_,
            clip_url=self.clip_url,
            progress_at=self.progress_at,
        )


def _machine(model: _Job | None) -> Machine:
    """A Machine of the core's stages and transitions, driving ``model`` (None: none yet)."""
    return Machine(
        model=model,
        states=_STATES,
        transitions=_MACHINE_TRANSITIONS,
        initial=Stage.REQUEST_ACCEPTED.value,
        auto_transitions=False,
    )


def machine_per_job(events: list[Any]) -> JobState:
    """The baseline: a Machine for this job, one trigger per event, the same state changes."""
    job = _Job(events[0])
    _machine(job)
    return _play(job, events)


def _play(job: _Job, events: list[Any]) -> JobState:
    """Fire one trigger per event after the first and apply its changes, as the fold does."""
    for event in events[1:]:
        before = job.state
        getattr(job, TRIGGERS[type(event)])()
        at = event.at
        if job.state != before:
            job.stage_since = at
        news = job.provider_status, job.tracks
        job.apply(event)
        if job.state != before or news != (job.provider_status, job.tracks):
            job.progress_at = max(job.progress_at, at)  # what the timeout counts from
        job.version += 1
        if at > job.updated_at:
            job.updated_at = at
    return job.to_state()


#: The second baseline's one Machine for every job, as a careful user would build it.
SHARED = _machine(None)


def shared_machine(events: list[Any]) -> JobState:
    """The second baseline: one Machine for all jobs, the job added as its model and removed
    after (``add_model``/``remove_model``), one trigger per event, the same state changes.
    """
    job = _Job(events[0])
    SHARED.add_model(job)
    try:
        return _play(job, events)
    finally:
        SHARED.remove_model(job)


def machine_triggers_only(events: list[Any]) -> str:
    """For reference: a Machine per job that fires the triggers and computes only the stage."""
    job = _Job(events[0])
    _machine(job)
    for event in events[1:]:
        getattr(job, TRIGGERS[type(event)])()
    return job.state


def _measure(baseline: Any, events: list[Any], *, gc_enabled: bool = True) -> Paired:
    return paired_times(
        lambda: baseline(events),
        lambda: fold(events),
        baseline_calls=150,
        candidate_calls=15_000,
        gc_enabled=gc_enabled,
    )


def main() -> None:
    args = bench_parser(__doc__, quick=False).parse_args()
    events = ten_events()
    folded = fold(events)
    # Like with like: the baseline computes exactly what the fold computes.
    if (
        machine_per_job(events) != folded
        or shared_machine(events) != folded
        or machine_triggers_only(events) != folded.stage
    ):
        raise SystemExit(
            f"the baseline and the fold disagree:\n{machine_per_job(events)}\n{folded}"
        )
    like = _measure(machine_per_job, events)
    shared = _measure(shared_machine, events)
    stage_only = _measure(machine_triggers_only, events)
    no_gc = _measure(machine_per_job, events, gc_enabled=False)

    def row(name: str, p: Paired) -> tuple[str, ...]:
        return (
            name,
            f"{p.baseline * 1e6:.1f} µs",
            f"{p.candidate * 1e6:.2f} µs",
            f"{p.ratio:.0f}x ({p.ratio_low:.0f}-{p.ratio_high:.0f})",
            f"{p.wall_ratio:.0f}x ({p.wall_ratio_low:.0f}-{p.wall_ratio_high:.0f})",
        )

    print(f"# fold of a 10-event log — {machine()}")
    print(
        table(
            [
                (
                    "baseline (transitions)",
                    "baseline",
                    "clipjobs.fold",
                    "ratio, CPU time",
                    "ratio, wall clock",
                ),
                row("triggers + same state changes -> JobState", like),
                row("  same, GC off for both sides", no_gc),
                row("one shared Machine, add_model/remove_model per job -> JobState", shared),
                row("triggers only -> stage (does less)", stage_only),
            ]
        )
    )
    print(
        f"CPU time per job (time.process_time); each ratio is the median of {like.repeats} "
        "paired ratios (lowest-highest); the wall-clock ratio times the same blocks with "
        "time.perf_counter and also counts the time the OS gave other processes."
    )
    print(
        "GC on for both sides as in production, gc.collect() before each timed block; "
        f"collections while timed: {like.baseline_gcs_per_call:.2f} per baseline job, "
        f"{like.candidate_gcs_per_call:.4f} per fold."
    )
    print(
        f"like with like (first row, CPU time): {like.ratio:.0f}x "
        f"(wall clock {like.wall_ratio:.0f}x); the former >= 100x goal is retired (issue 16)"
    )
    figures: dict[str, Any] = {
        name: {
            "baseline_us": p.baseline * 1e6,
            "fold_us": p.candidate * 1e6,
            "ratio": p.ratio,
            "ratio_low": p.ratio_low,
            "ratio_high": p.ratio_high,
            "wall_baseline_us": p.wall_baseline * 1e6,
            "wall_fold_us": p.wall_candidate * 1e6,
            "wall_ratio": p.wall_ratio,
            "wall_ratio_low": p.wall_ratio_low,
            "wall_ratio_high": p.wall_ratio_high,
            "repeats": p.repeats,
            "baseline_gcs_per_call": p.baseline_gcs_per_call,
            "fold_gcs_per_call": p.candidate_gcs_per_call,
        }
        for name, p in (
            ("like_for_like", like),
            ("gc_off", no_gc),
            ("shared_machine", shared),
            ("triggers_only", stage_only),
        )
    }
    write_json(args.json, figures)


if __name__ == "__main__":
    main()
