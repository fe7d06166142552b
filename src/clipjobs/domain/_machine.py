"""The one ``transitions`` machine that declares the legal stage graph, and what follows from it.

Everything about stages is stated here once: the edges (``_TRANSITIONS``),
which event fires which trigger (``TRIGGERS``), the background work each
stage waits for (``WORK``). The machine is built once, at import, with no
model attached; :data:`TABLE` is compiled from it, and the fold, ``decide``
and ``JobState.done`` all ask :func:`next_stage` — none builds a machine per
job or keeps a copy of the graph.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from attrs import frozen
from transitions import Machine

from .events import (
    ClipProcessingStarted,
    ClipReady,
    ClipStepReached,
    JobCancelled,
    JobFailed,
    JobRetried,
    JobTimedOut,
    LateObservation,
    MediaCopyFailed,
    MediaStored,
    ObservationRepeated,
    SunoProgressObserved,
    SunoRequestRetryScheduled,
    SunoRequestSent,
    SunoRequestUncertain,
    SunoSucceeded,
    SunoTaskCreated,
)
from .stages import Stage, Work

__all__ = [
    "CONDITIONS",
    "MACHINE",
    "TABLE",
    "TERMINAL_STAGES",
    "TRIGGERS",
    "WORK",
    "Step",
    "is_done",
    "mermaid",
    "next_stage",
]

S = Stage
_SENDING = [S.REQUEST_ACCEPTED, S.SUNO_REQUEST_SENT]
_AT_SUNO = [S.SUNO_TASK_CREATED, S.SUNO_PENDING]
_GENERATING = [*_SENDING, *_AT_SUNO]

#: Conditions the graph may name; each is a flag of the job's policy.
CONDITIONS = frozenset({"clip_render"})

_TRANSITIONS: list[dict[str, Any]] = [
    # Attempt 1 from STAGE_10; a retry or the resend of an uncertain call from STAGE_20.
    {"trigger": "send_request", "source": _SENDING, "dest": S.SUNO_REQUEST_SENT},
    {"trigger": "note_request", "source": S.SUNO_REQUEST_SENT, "dest": S.SUNO_REQUEST_SENT},
    {"trigger": "create_task", "source": _SENDING, "dest": S.SUNO_TASK_CREATED},
    {"trigger": "observe_progress", "source": _AT_SUNO, "dest": S.SUNO_PENDING},
    {"trigger": "succeed", "source": _AT_SUNO, "dest": S.SUNO_SUCCESS},
    # A re-render (retry from the clip): the parent's tracks, no Suno call.
    {
        "trigger": "succeed",
        "source": S.REQUEST_ACCEPTED,
        "dest": S.SUNO_SUCCESS,
        "conditions": "clip_render",
    },
    {"trigger": "fail", "source": _GENERATING, "dest": S.FAILED},
    {"trigger": "fail", "source": S.SUNO_SUCCESS, "dest": S.FAILED, "conditions": "clip_render"},
    {"trigger": "fail", "source": S.CLIP_PROCESSING, "dest": S.FAILED},
    {"trigger": "time_out", "source": _GENERATING, "dest": S.TIMEOUT},
    {
        "trigger": "start_clip",
        "source": S.SUNO_SUCCESS,
        "dest": S.CLIP_PROCESSING,
        "conditions": "clip_render",
    },
    {"trigger": "clip_step", "source": S.CLIP_PROCESSING, "dest": S.CLIP_PROCESSING},
    {"trigger": "clip_ready", "source": S.CLIP_PROCESSING, "dest": S.CLIP_READY},
    # Someone stops the job: from any stage that still has work.
    {"trigger": "cancel", "source": [*_GENERATING, S.CLIP_PROCESSING], "dest": S.CANCELLED},
    {
        "trigger": "cancel",
        "source": S.SUNO_SUCCESS,
        "dest": S.CANCELLED,
        "conditions": "clip_render",
    },
    # Recorded in any stage, changing none: what Suno says that can no longer
    # count, a retry started from a finished job, and the copies of what was made
    # (they may follow a terminal stage).
    {"trigger": "note", "source": "*", "dest": "="},
]

#: The trigger each event fires (``JobAccepted`` starts a log and fires none).
TRIGGERS: Mapping[type[Any], str] = MappingProxyType(
    {
        SunoRequestSent: "send_request",
        SunoRequestRetryScheduled: "note_request",
        SunoRequestUncertain: "note_request",
        SunoTaskCreated: "create_task",
        SunoProgressObserved: "observe_progress",
        SunoSucceeded: "succeed",
        JobFailed: "fail",
        JobTimedOut: "time_out",
        ClipProcessingStarted: "start_clip",
        ClipStepReached: "clip_step",
        ClipReady: "clip_ready",
        JobCancelled: "cancel",
        JobRetried: "note",
        LateObservation: "note",
        ObservationRepeated: "note",
        MediaStored: "note",
        MediaCopyFailed: "note",
    }
)

#: The background work a job that is not done waits for, by stage (STAGE_20's
#: depends on where its generate call stands: see ``JobState.work``).
WORK: Mapping[Stage, Work] = MappingProxyType(
    {
        S.REQUEST_ACCEPTED: Work.SEND,
        S.SUNO_REQUEST_SENT: Work.SEND,
        S.SUNO_TASK_CREATED: Work.POLL,
        S.SUNO_PENDING: Work.POLL,
        S.SUNO_SUCCESS: Work.RENDER,
        S.CLIP_PROCESSING: Work.RENDER,
    }
)


def _plain(value: Any) -> Any:
    if isinstance(value, list):
        return [str(x) for x in value]
    return str(value)


MACHINE = Machine(
    model=None,
    states=[s.value for s in Stage],
    transitions=[
        {**t, "source": _plain(t["source"]), "dest": _plain(t["dest"])} for t in _TRANSITIONS
    ],
    initial=S.REQUEST_ACCEPTED.value,
    auto_transitions=False,
)


@frozen
class Step:
    """One compiled edge: where a trigger leads, and what must hold for it."""

    dest: Stage
    #: Condition names that must be true (all of them).
    requires: tuple[str, ...] = ()


def _compile(machine: Machine) -> Mapping[tuple[Stage, str], tuple[Step, ...]]:
    table: dict[tuple[Stage, str], tuple[Step, ...]] = {}
    for trigger, event in machine.events.items():
        for source, transitions in event.transitions.items():
            steps = []
            for t in transitions:
                requires = []
                for cond in t.conditions:
                    if cond.func not in CONDITIONS or not cond.target:
                        raise ValueError(f"unsupported condition {cond.func!r} on {trigger}")
                    requires.append(cond.func)
                if t.dest is None:
                    raise ValueError(f"internal transitions are not used ({trigger})")
                steps.append(Step(Stage(t.dest), tuple(requires)))
            table[(Stage(source), trigger)] = tuple(steps)
    return MappingProxyType(table)


#: ``(stage, trigger) -> steps``, compiled once from :data:`MACHINE`.
TABLE = _compile(MACHINE)


def _conditions(clip_render: bool) -> frozenset[str]:
    return frozenset({"clip_render"}) if clip_render else frozenset()


def _step(stage: Stage, trigger: str, clip_render: bool) -> Stage | None:
    held = _conditions(clip_render)
    for step in TABLE.get((stage, trigger), ()):
        if held.issuperset(step.requires):
            return step.dest
    return None


#: ``(stage, clip_render, event type) -> destination`` for every legal event:
#: the fold's one look-up per event.
_NEXT: Mapping[tuple[Stage, bool, type[Any]], Stage] = MappingProxyType(
    {
        (stage, clip, cls): dest
        for stage in Stage
        for clip in (False, True)
        for cls, trigger in TRIGGERS.items()
        if (dest := _step(stage, trigger, clip)) is not None
    }
)


def next_stage(stage: Stage, clip_render: bool, event_type: type[Any]) -> Stage | None:
    """Where an event of ``event_type`` leads from ``stage``; None when the graph forbids it."""
    return _NEXT.get((stage, clip_render, event_type))


#: A stage is done when no edge leads out of it (under the job's conditions).
_DONE: Mapping[tuple[Stage, bool], bool] = MappingProxyType(
    {
        (stage, clip): not any(
            dest is not stage for (s, c, _), dest in _NEXT.items() if s is stage and c is clip
        )
        for stage in Stage
        for clip in (False, True)
    }
)


def is_done(stage: Stage, clip_render: bool) -> bool:
    """True once nothing can move the job out of ``stage``."""
    return _DONE[(stage, clip_render)]


#: Stages that absorb everything whatever the policy. STAGE_50 is terminal
#: too, unless the job was accepted with post-processing on.
TERMINAL_STAGES = frozenset(s for s in Stage if is_done(s, False) and is_done(s, True))


def mermaid() -> str:
    """The stage graph as a Mermaid state diagram, generated from the machine."""
    lines = ["stateDiagram-v2", f"    [*] --> {S.REQUEST_ACCEPTED.value}"]
    for (source, trigger), steps in sorted(
        TABLE.items(), key=lambda kv: (kv[0][0].number, kv[0][1])
    ):
        for step in steps:
            if trigger == "note":
                continue  # late or repeated observations, on every stage: not drawn
            label = trigger + (f" [{', '.join(step.requires)}]" if step.requires else "")
            lines.append(f"    {source.value} --> {step.dest.value}: {label}")
    for stage in Stage:
        if is_done(stage, False):
            lines.append(f"    {stage.value} --> [*]")
    return "\n".join(lines) + "\n"
