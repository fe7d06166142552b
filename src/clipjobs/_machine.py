"""The one ``transitions`` machine that declares the legal stage graph.

It is built once, at import, with no model attached. Folding a log never
touches it: :data:`TABLE` is compiled from it once, and the fold looks up
``(stage, trigger) -> (destination, conditions)`` in a dict.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from attrs import frozen
from transitions import Machine

from .stages import Stage

__all__ = ["CONDITIONS", "MACHINE", "TABLE", "Step", "mermaid"]

S = Stage
_GENERATING = [S.REQUEST_ACCEPTED, S.SUNO_REQUEST_SENT, S.SUNO_TASK_CREATED, S.SUNO_PENDING]

#: Conditions the graph may name; each is a flag of the job's policy.
CONDITIONS = frozenset({"clip_render"})

_TRANSITIONS: list[dict[str, object]] = [
    {"trigger": "send_request", "source": S.REQUEST_ACCEPTED, "dest": S.SUNO_REQUEST_SENT},
    # A retry after a failure that Suno never acted on, or a recovery note.
    {"trigger": "resend_request", "source": S.SUNO_REQUEST_SENT, "dest": S.SUNO_REQUEST_SENT},
    {"trigger": "note_request", "source": S.SUNO_REQUEST_SENT, "dest": S.SUNO_REQUEST_SENT},
    {
        "trigger": "create_task",
        "source": [S.REQUEST_ACCEPTED, S.SUNO_REQUEST_SENT],
        "dest": S.SUNO_TASK_CREATED,
    },
    {
        "trigger": "observe_progress",
        "source": [S.SUNO_TASK_CREATED, S.SUNO_PENDING],
        "dest": S.SUNO_PENDING,
    },
    {"trigger": "succeed", "source": [S.SUNO_TASK_CREATED, S.SUNO_PENDING], "dest": S.SUNO_SUCCESS},
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
]

MACHINE = Machine(
    model=None,
    states=[s.value for s in Stage],
    transitions=[
        {
            **t,
            "source": [str(x) for x in t["source"]]
            if isinstance(t["source"], list)
            else str(t["source"]),
            "dest": str(t["dest"]),
        }
        for t in _TRANSITIONS
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


def mermaid() -> str:
    """The stage graph as a Mermaid state diagram, generated from the machine."""
    lines = ["stateDiagram-v2", f"    [*] --> {S.REQUEST_ACCEPTED.value}"]
    for (source, trigger), steps in sorted(
        TABLE.items(), key=lambda kv: (kv[0][0].number, kv[0][1])
    ):
        for step in steps:
            label = trigger + (f" [{', '.join(step.requires)}]" if step.requires else "")
            lines.append(f"    {source.value} --> {step.dest.value}: {label}")
    for terminal in (S.SUNO_SUCCESS, S.CLIP_READY, S.FAILED, S.TIMEOUT):
        lines.append(f"    {terminal.value} --> [*]")
    return "\n".join(lines) + "\n"
