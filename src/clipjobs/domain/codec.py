"""Events and job states to JSON rows and back: the only place that knows the classes.

Stores never see event classes (the eventsourcing "mapper" idea): they keep
``(job_id, version, type, payload, recorded_at)`` rows and an opaque state
document for the projection, and call these functions at their edge.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, get_args

import cattrs
from cattrs.strategies import configure_tagged_union

from .errors import StoreCorrupt
from .events import Event
from .state import JobState

__all__ = [
    "EVENT_TYPES",
    "decode_event",
    "decode_state",
    "encode_event",
    "encode_state",
    "format_ts",
    "parse_ts",
]

#: Every event class by its ``type`` tag (the class name).
EVENT_TYPES: dict[str, type[Any]] = {cls.__name__: cls for cls in get_args(Event)}


def format_ts(value: datetime) -> str:
    """ISO 8601 UTC with milliseconds and ``Z`` (SPEC section 4)."""
    # isoformat truncates to milliseconds as the old strftime did, at a fraction of its cost.
    if value.tzinfo is UTC:
        # What the store and the clock give: "…+00:00" is the last 6 characters (GET's twice).
        return value.isoformat(timespec="milliseconds")[:-6] + "Z"
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def parse_ts(value: str) -> datetime:
    """Parse an ISO 8601 timestamp; naive ones are taken as UTC."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _make_converter() -> cattrs.Converter:
    # detailed_validation=False: a broken document still raises, with a shorter
    # message, and structuring a JobState (every GET) costs about half.
    conv = cattrs.Converter(forbid_extra_keys=False, detailed_validation=False)
    # Full precision on the wire, so the fold of a decoded log equals the original.
    conv.register_unstructure_hook(datetime, lambda d: d.astimezone(UTC).isoformat())
    conv.register_structure_hook(datetime, lambda v, _: parse_ts(v))
    configure_tagged_union(
        Event,
        conv,
        tag_name="type",
        tag_generator=lambda cls: cls.__name__,
    )
    return conv


_CONVERTER = _make_converter()


def encode_event(event: Event) -> tuple[str, str]:
    """``(type, payload JSON)`` for a store's row; the payload omits the tag."""
    data = _CONVERTER.unstructure(event, Event)
    tag = data.pop("type")
    return tag, json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def decode_event(type_: str, payload: str | bytes | dict[str, Any]) -> Event:
    """The event a store's row holds; a row that is not one raises StoreCorrupt."""
    if type_ not in EVENT_TYPES:
        raise StoreCorrupt(f"unknown event type {type_!r} (written by a newer clipjobs?)")
    try:
        data = json.loads(payload) if isinstance(payload, str | bytes) else dict(payload)
        data["type"] = type_
        return _CONVERTER.structure(data, Event)  # type: ignore[arg-type]
    except (ValueError, TypeError, KeyError, cattrs.BaseValidationError) as exc:
        raise StoreCorrupt(f"unreadable {type_} event: {exc}") from exc


def encode_state(state: JobState) -> str:
    """The projection document for a job."""
    return json.dumps(_CONVERTER.unstructure(state), ensure_ascii=False, separators=(",", ":"))


def decode_state(document: str | bytes | dict[str, Any]) -> JobState:
    """The job a projection document holds; a broken one raises StoreCorrupt."""
    try:
        data = json.loads(document) if isinstance(document, str | bytes) else document
        return _CONVERTER.structure(data, JobState)
    except (ValueError, TypeError, KeyError, AttributeError, cattrs.BaseValidationError) as exc:
        raise StoreCorrupt(f"unreadable job projection: {exc}") from exc
