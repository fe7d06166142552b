"""What a command sequence reached: what the property tests report, and the probe that counts it.

``reach(commands)`` decides and folds the commands and says what happened on
the way: the stages the job went through, each ``(stage, event type, stage)``
step, the late-observation reasons, and the hard cases of the input (a callback
delivered twice, statuses out of order, Suno heard after the end, a send that
crashed, time going backwards).

Run as a script it is the probe of issue 19: 2,000 examples of
``strategies.commands()`` (derandomized, so every run draws the same), and the
share of jobs that reached each thing::

    python tests/core/_reach.py [--examples 2000]
"""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any

from attrs import define, field, frozen

from clipjobs import Event, JobState, LateObservation, ProviderStatus, Stage, decide, evolve
from clipjobs.domain.commands import Command, RecordObservation
from clipjobs.domain.events import ClipStepReached, SunoRequestUncertain, SunoSucceeded

#: How far along Suno says a task is; out of order means lower than one already heard.
_RANK = {ProviderStatus.PENDING: 0, ProviderStatus.TEXT_SUCCESS: 1, ProviderStatus.FIRST_SUCCESS: 2}

Step = tuple[Stage, type[Any], Stage]


@frozen
class Reach:
    final: Stage
    stages: frozenset[Stage]
    #: Every event the log holds as (stage before, its type, stage after).
    steps: frozenset[Step]
    late_reasons: frozenset[str]
    succeeded: bool
    clip_step: bool
    #: The same status of the same task delivered again.
    duplicated: bool
    #: A status delivered after a later one of the same task.
    out_of_order: bool
    #: A send that may have reached Suno when its process died (recorded as uncertain).
    crash_mid_send: bool
    #: A command issued earlier than the one before it.
    clock_skew: bool

    @property
    def late(self) -> bool:
        """Suno was heard after the job had ended."""
        return "after_terminal" in self.late_reasons

    def labels(self) -> list[str]:
        """What to report through ``hypothesis.event``."""
        out = [f"final {self.final.value}"]
        flags = (
            ("succeeded", self.succeeded),
            ("reached CLIP_READY", Stage.CLIP_READY in self.stages),
            ("had a clip step", self.clip_step),
            ("duplicated callback", self.duplicated),
            ("out-of-order callback", self.out_of_order),
            ("late callback", self.late),
            ("crash mid-send", self.crash_mid_send),
            ("clock went backwards", self.clock_skew),
        )
        out += [name for name, hit in flags if hit]
        out += [f"late observation: {reason}" for reason in sorted(self.late_reasons)]
        return out


def reach(commands: list[Command]) -> tuple[list[Event], JobState, Reach]:
    """Decide and fold ``commands``; the log, the final state, and what it reached."""
    state: JobState | None = None
    log: list[Event] = []
    steps: set[Step] = set()
    stages: set[Stage] = set()
    heard: dict[str, set[ProviderStatus]] = {}
    duplicated = out_of_order = clock_skew = False
    previous_at = None
    for command in commands:
        at = command.at
        if previous_at is not None and at < previous_at:
            clock_skew = True
        previous_at = at
        if isinstance(command, RecordObservation):
            obs = command.observation
            seen = heard.setdefault(obs.task_id, set())
            duplicated |= obs.status in seen
            rank = _RANK.get(obs.status, 3)
            out_of_order |= any(_RANK.get(s, 3) > rank for s in seen)
            seen.add(obs.status)
        for event in decide(command, state):
            before = state.stage if state is not None else None
            state = evolve(state, event)
            if before is not None:
                steps.add((before, type(event), state.stage))
            stages.add(state.stage)
            log.append(event)
    if state is None:
        raise ValueError("the commands never started a job")
    return (
        log,
        state,
        Reach(
            final=state.stage,
            stages=frozenset(stages),
            steps=frozenset(steps),
            late_reasons=frozenset(e.reason for e in log if isinstance(e, LateObservation)),
            succeeded=any(isinstance(e, SunoSucceeded) for e in log),
            clip_step=any(isinstance(e, ClipStepReached) for e in log),
            duplicated=duplicated,
            out_of_order=out_of_order,
            crash_mid_send=any(isinstance(e, SunoRequestUncertain) for e in log),
            clock_skew=clock_skew,
        ),
    )


@define
class Probe:
    """What a number of generated command sequences reached, together."""

    examples: int = 0
    #: How many examples carried each label of :meth:`Reach.labels`.
    counts: Counter[str] = field(factory=Counter)
    steps: set[Step] = field(factory=set)
    #: Every event type any log held (``JobAccepted`` included).
    types: set[type[Any]] = field(factory=set)

    def add(self, log: list[Event], found: Reach) -> None:
        self.examples += 1
        self.counts.update(found.labels())
        self.steps |= found.steps
        self.types |= {type(e) for e in log}

    def share(self, label: str) -> float:
        return self.counts[label] / self.examples


def probe(examples: int) -> Probe:
    """What ``examples`` derandomized examples of ``strategies.commands()`` reached.

    Derandomized: every run draws the same examples (for a given hypothesis
    version), so a test on the result cannot flake.
    """
    from hypothesis import HealthCheck, given, settings

    from clipjobs.testing import strategies

    found = Probe()

    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategies.commands())
    def collect(commands: list[Command]) -> None:
        log, _, reached = reach(commands)
        found.add(log, reached)

    collect()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description="The share of generated jobs reaching each path.")
    parser.add_argument("--examples", type=int, default=2000)
    args = parser.parse_args()
    found = probe(args.examples)
    print(f"{found.examples} examples of strategies.commands()")
    for label, n in sorted(found.counts.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"{100 * n / found.examples:6.2f}%  {n:5d}  {label}")


if __name__ == "__main__":
    main()
