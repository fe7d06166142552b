"""Property tests: round-trips, and the invariants of every log `decide` can make."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from clipjobs import (
    TERMINAL_STAGES,
    Event,
    JobAccepted,
    JobFailed,
    JobTimedOut,
    LateObservation,
    ObservationRepeated,
    Stage,
    SunoSucceeded,
    decide,
    evolve,
    fold,
)
from clipjobs.codec import decode_event, decode_state, encode_event, encode_state
from clipjobs.commands import Command, RecordObservation
from clipjobs.testing import strategies

TERMINAL_EVENTS = (JobFailed, JobTimedOut)


@given(strategies.events())
def test_every_event_round_trips(event: Event) -> None:
    """Any event survives the converter: encode then decode gives it back."""
    assert decode_event(*encode_event(event)) == event


@given(strategies.job_logs())
def test_every_state_round_trips(log: list[Event]) -> None:
    """The projection document of any reachable state decodes to the same state."""
    state = fold(log)
    assert decode_state(encode_state(state)) == state


def _stages(commands: list[Command]) -> tuple[list[Event], list[Stage]]:
    state = None
    log: list[Event] = []
    stages: list[Stage] = []
    for command in commands:
        events = decide(command, state)
        for event in events:
            state = evolve(state, event)
            stages.append(state.stage)
        log.extend(events)
    return log, stages


@given(strategies.commands())
def test_stage_numbers_never_decrease(commands: list[Command]) -> None:
    """Under any command sequence, each event leaves the stage number equal or higher."""
    _, stages = _stages(commands)
    numbers = [s.number for s in stages]
    assert numbers == sorted(numbers)


@given(strategies.commands())
def test_terminal_stage_is_never_left(commands: list[Command]) -> None:
    """Once a job is done, every later event leaves the stage as it was."""
    state = None
    for command in commands:
        for event in decide(command, state):
            was_done = state is not None and state.done
            before = state.stage if state is not None else None
            state = evolve(state, event)
            if was_done:
                assert state.stage is before
                assert isinstance(event, LateObservation | ObservationRepeated)


@given(strategies.commands())
def test_at_most_one_terminal_event_and_one_success(commands: list[Command]) -> None:
    """A log has at most one JobFailed/JobTimedOut and at most one SunoSucceeded."""
    log, _ = _stages(commands)
    assert sum(isinstance(e, TERMINAL_EVENTS) for e in log) <= 1
    assert sum(isinstance(e, SunoSucceeded) for e in log) <= 1
    assert isinstance(log[0], JobAccepted)
    assert sum(isinstance(e, JobAccepted) for e in log) == 1


@given(strategies.commands())
def test_folding_the_log_equals_stepwise_evolution(commands: list[Command]) -> None:
    """fold(whole log) equals evolving event by event, and versions count the events."""
    state = None
    log: list[Event] = []
    for command in commands:
        events = decide(command, state)
        for event in events:
            state = evolve(state, event)
        log.extend(events)
    assert state is not None
    assert fold(log) == state
    assert state.version == len(log)
    if log[1:]:
        middle = len(log) // 2
        assert fold(log[middle:], fold(log[:middle])) == state


@given(strategies.commands(), st.randoms(use_true_random=False))
def test_shuffled_and_duplicated_observations_end_in_one_result(
    commands: list[Command], rnd: object
) -> None:
    """Observations delivered twice and in any order never yield two results."""
    observations = [c for c in commands if isinstance(c, RecordObservation)]
    extra = observations * 2
    rnd.shuffle(extra)  # type: ignore[attr-defined]
    log, _ = _stages([*commands, *extra])
    assert sum(isinstance(e, SunoSucceeded) for e in log) <= 1
    assert sum(isinstance(e, TERMINAL_EVENTS) for e in log) <= 1
    final = fold(log)
    if final.stage in TERMINAL_STAGES:
        assert final.done
