"""Property tests: round-trips, the invariants of every log `decide` can make, and their reach.

The command sequences come from ``clipjobs.testing.strategies.commands()``;
each test reports what its examples reached through ``hypothesis.event`` (run
pytest with ``--hypothesis-show-statistics`` to see it), and two tests pin
that the generated jobs do reach the interesting paths: every edge of the
stage graph, and success, clips and the hard cases often.
"""

from __future__ import annotations

import typing
from datetime import timedelta
from typing import Any

import attrs
import pytest
from _reach import Probe, Reach, Step, probe, reach
from hypothesis import event, given, target
from hypothesis import strategies as st

from clipjobs import (
    Event,
    JobAccepted,
    JobCancelled,
    JobFailed,
    JobRetried,
    JobTimedOut,
    LateObservation,
    ObservationRepeated,
    Stage,
    SunoSucceeded,
    decide,
    evolve,
    fold,
)
from clipjobs.domain._machine import _NEXT, TABLE
from clipjobs.domain.codec import decode_event, decode_state, encode_event, encode_state
from clipjobs.domain.commands import (
    Command,
    MarkRequestSent,
    MarkRequestUncertain,
    RecordObservation,
    RecordTaskCreated,
    StartJob,
)
from clipjobs.domain.events import MediaCopyFailed, MediaStored, Source
from clipjobs.testing import strategies

TERMINAL_EVENTS = (JobFailed, JobTimedOut, JobCancelled)


def _report(found: Reach) -> None:
    """Tell hypothesis what this example reached (shown with --hypothesis-show-statistics)."""
    for label in found.labels():
        event(label)
    target(float(len(found.steps)), label="distinct (stage, event, stage) steps")


@given(strategies.events())
def test_every_event_round_trips(event_: Event) -> None:
    """Any event survives the converter: encode then decode gives it back."""
    assert decode_event(*encode_event(event_)) == event_


@given(strategies.job_logs())
def test_every_state_round_trips(log: list[Event]) -> None:
    """The projection document of any reachable state decodes to the same state."""
    state = fold(log)
    assert decode_state(encode_state(state)) == state


def _stages(commands: list[Command]) -> list[Stage]:
    """The stage after each event ``decide`` makes of ``commands``."""
    state = None
    stages: list[Stage] = []
    for command in commands:
        for new in decide(command, state):
            state = evolve(state, new)
            stages.append(state.stage)
    return stages


@given(strategies.commands())
def test_stage_numbers_never_decrease(commands: list[Command]) -> None:
    """Under any command sequence, each event leaves the stage number equal or higher."""
    _report(reach(commands)[2])
    numbers = [s.number for s in _stages(commands)]
    assert numbers == sorted(numbers)


@given(strategies.commands())
def test_terminal_stage_is_never_left(commands: list[Command]) -> None:
    """Once a job is done, every later event leaves the stage as it was."""
    _report(reach(commands)[2])
    state = None
    for command in commands:
        for new in decide(command, state):
            was_done = state is not None and state.done
            before = state.stage if state is not None else None
            state = evolve(state, new)
            if was_done:
                assert state.stage is before
                assert isinstance(
                    new,
                    LateObservation
                    | ObservationRepeated
                    | MediaStored
                    | MediaCopyFailed
                    | JobRetried,
                )


@given(strategies.commands())
def test_at_most_one_terminal_event_and_one_success(commands: list[Command]) -> None:
    """A log has at most one JobFailed/JobTimedOut/JobCancelled and at most one SunoSucceeded."""
    log, _, found = reach(commands)
    _report(found)
    assert sum(isinstance(e, TERMINAL_EVENTS) for e in log) <= 1
    assert sum(isinstance(e, SunoSucceeded) for e in log) <= 1
    assert isinstance(log[0], JobAccepted)
    assert sum(isinstance(e, JobAccepted) for e in log) == 1


@given(strategies.commands())
def test_folding_the_log_equals_stepwise_evolution(commands: list[Command]) -> None:
    """fold(whole log) equals evolving event by event, and versions count the events."""
    log, state, found = reach(commands)
    _report(found)
    assert fold(log) == state
    assert state.version == len(log)
    if log[1:]:
        middle = len(log) // 2
        assert fold(log[middle:], fold(log[:middle])) == state


# --- Suno's story delivered twice, in any order --------------------------------------


@st.composite
def suno_story(draw: Any) -> tuple[list[Command], list[Command]]:
    """A job whose generate call went out, and everything Suno says about its task in Suno's order.

    The job's own commands (start, send, and sometimes a crash mid-send, so
    that only a callback can name the task), then Suno's: the generate answer
    (lost in a crash) and ``strategies.task_reports``.
    """
    start = draw(strategies.commands(max_size=0))[0]
    assert isinstance(start, StartJob)
    at = start.at
    own: list[Command] = [start, MarkRequestSent(at)]
    task = draw(st.text(alphabet="abcdef0123456789", min_size=8, max_size=8))
    crashed = draw(st.booleans())
    said: list[Command] = []
    if crashed:
        own.append(MarkRequestUncertain("the sender died mid-call", at))
    else:
        said.append(RecordTaskCreated(task, at))
    for report in draw(strategies.task_reports(task)):
        # No task id, nothing to poll: after a crash only callbacks come.
        sources = [Source.CALLBACK] if crashed else [Source.CALLBACK, Source.POLL]
        source = draw(st.sampled_from(sources))
        said.append(RecordObservation(report, source, at))
    return own, said


def _timed(commands: list[Command], start: Any) -> list[Command]:
    """The same commands issued one second apart from ``start``, in this order."""
    return [attrs.evolve(c, at=start + timedelta(seconds=i)) for i, c in enumerate(commands)]


@given(suno_story(), st.data())
def test_duplicated_and_shuffled_reports_end_in_the_same_state(
    story: tuple[list[Command], list[Command]], data: st.DataObject
) -> None:
    """Suno's messages delivered one to three times each, all of them in any order, end the job
    as delivering each once in Suno's order does: the same stage, task and error, and the same
    tracks (a failed job aside: it keeps whatever preview came before the failure).
    """
    own, said = story
    start = own[0].at
    _, once, _ = reach(_timed(own + said, start))
    copies = [m for m in said for _ in range(data.draw(st.integers(1, 3), label="copies"))]
    delivered = data.draw(st.permutations(copies), label="delivery order")
    log, again, found = reach(_timed(own + delivered, start))
    _report(found)

    assert (again.stage, again.task_id, again.error_code, again.done) == (
        once.stage,
        once.task_id,
        once.error_code,
        once.done,
    )
    if once.stage is not Stage.FAILED:
        assert again.tracks == once.tracks
    assert sum(isinstance(e, SunoSucceeded) for e in log) <= 1
    assert sum(isinstance(e, TERMINAL_EVENTS) for e in log) <= 1
    assert again.late_observations == sum(isinstance(e, LateObservation) for e in log)


# --- what the generated jobs reach -------------------------------------------------------

#: Examples the reach tests look at: enough that the rarest edge comes up several times.
PROBE_EXAMPLES = 1000


@pytest.fixture(scope="module")
def generated() -> Probe:
    """What PROBE_EXAMPLES derandomized examples of ``strategies.commands()`` reached."""
    return probe(PROBE_EXAMPLES)


def _graph() -> tuple[set[Step], set[type[Any]]]:
    """The machine's compiled table as steps, and the event types that are records, not moves.

    Steps: every ``(stage, event type, stage after)`` the fold accepts under
    either policy (with and without post-processing). Records: the types it
    accepts in every stage without changing it (a late observation); those
    are left out of the steps.
    """
    steps = {(stage, cls, dest) for (stage, _clip, cls), dest in _NEXT.items()}
    types = {cls for _, cls, _ in steps}
    records = {cls for cls in types if all((s, cls, s) in steps for s in Stage)}
    return {s for s in steps if s[1] not in records}, records


def test_every_edge_of_the_stage_graph_is_exercised(generated: Probe) -> None:
    """The generated jobs take every step the fold's table allows and no other, cover every
    edge of the ``transitions`` machine, and make every type of event there is.
    """
    moves, records = _graph()
    taken = {s for s in generated.steps if s[1] not in records}

    def named(steps: set[Step]) -> list[str]:
        return sorted(f"{a.value} --{cls.__name__}--> {b.value}" for a, cls, b in steps)

    assert named(moves - taken) == [], "steps of the graph no generated job takes"
    assert named(taken - moves) == []
    # The reflexive ``note`` trigger (a record in any stage) is not a move.
    machine_edges = {
        (src, step.dest)
        for (src, trigger), steps in TABLE.items()
        if trigger != "note"
        for step in steps
    }
    assert machine_edges == {(a, b) for a, _, b in taken}
    every_type = set(typing.get_args(Event))
    assert sorted(t.__name__ for t in every_type - generated.types) == []
    assert records <= generated.types


def test_generated_jobs_reach_the_interesting_paths(generated: Probe) -> None:
    """At least 30% of generated jobs succeed and 10% reach CLIP_READY, and each hard case
    (a duplicated, out-of-order or late callback, a crash mid-send, the clock going backwards)
    comes up in at least 10% of them.
    """
    assert generated.share("succeeded") >= 0.30
    assert generated.share("reached CLIP_READY") >= 0.10
    for hard in (
        "duplicated callback",
        "out-of-order callback",
        "late callback",
        "crash mid-send",
        "clock went backwards",
    ):
        assert generated.share(hard) >= 0.10, hard
    for reason in ("after_terminal", "duplicate", "stale", "task_mismatch"):
        assert generated.counts[f"late observation: {reason}"] > 0, reason
