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
from cattrs.cols import namedtuple_dict_structure_factory, namedtuple_dict_unstructure_factory
from cattrs.strategies import configure_tagged_union

from .errors import StoreCorrupt
from .events import ClipStep, Event, GenerationParams, JobPolicy, ProviderStatus, Source, Track
from .stages import Stage
from .state import JobState, SendState

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
    conv = cattrs.Converter(forbid_extra_keys=False)
    # Full precision on the wire, so the fold of a decoded log equals the original.
    conv.register_unstructure_hook(datetime, lambda d: d.astimezone(UTC).isoformat())
    conv.register_structure_hook(datetime, lambda v, _: parse_ts(v))
    # The projection document is a JSON object, not an array: readable in the database.
    conv.register_unstructure_hook_factory(
        lambda t: t is JobState, namedtuple_dict_unstructure_factory
    )
    conv.register_structure_hook_factory(lambda t: t is JobState, namedtuple_dict_structure_factory)
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


#: Enum members by value: a dict look-up instead of ``Enum.__call__`` (an unknown value
#: raises KeyError, and cattrs then gives its own error).
_STAGES = {m.value: m for m in Stage}
_STATUSES = {m.value: m for m in ProviderStatus}
_SOURCES = {m.value: m for m in Source}
_SEND_STATES = {m.value: m for m in SendState}
_CLIP_STEPS = {m.value: m for m in ClipStep}


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _opt_ts(value: Any) -> datetime | None:
    return None if value is None else parse_ts(value)


def _fast_state(d: dict[str, Any]) -> JobState:
    """``_CONVERTER.structure(d, JobState)`` written out: the same calls, a third of the time.

    It applies what cattrs' generated code applies (``str()``, ``int()``,
    ``float()``, ``bool()``, the enum's member, ``parse_ts``) but wants every key
    present: a document that lacks one (defaults) or is broken raises, and
    :func:`decode_state` then asks cattrs, which fills defaults or says what
    is wrong. ``tests/core/test_codec_fast.py`` checks both agree.
    """
    p, q = d["params"], d["policy"]
    step, status, source = d["clip_step"], d["provider_status"], d["last_observation_source"]
    return JobState(
        str(d["job_id"]),
        str(d["channel_id"]),
        str(d["user_id"]),
        str(d["request_id"]),
        GenerationParams(
            prompt=str(p["prompt"]),
            style=_opt_str(p["style"]),
            title=_opt_str(p["title"]),
            custom_mode=bool(p["custom_mode"]),
            instrumental=bool(p["instrumental"]),
            model=str(p["model"]),
            negative_tags=_opt_str(p["negative_tags"]),
        ),
        JobPolicy(
            timeout_s=int(q["timeout_s"]),
            poll_after_s=float(q["poll_after_s"]),
            poll_interval_s=float(q["poll_interval_s"]),
            clip_render=bool(q["clip_render"]),
        ),
        _opt_str(d["idempotency_key"]),
        str(d["fingerprint"]),
        bool(d["exclusive"]),
        _STAGES[d["stage"]],
        int(d["version"]),
        parse_ts(d["created_at"]),
        parse_ts(d["updated_at"]),
        parse_ts(d["stage_since"]),
        _opt_str(d["task_id"]),
        None if status is None else _STATUSES[status],
        tuple(
            Track(
                id=str(t["id"]),
                audio_url=str(t["audio_url"]),
                stream_audio_url=str(t["stream_audio_url"]),
                image_url=str(t["image_url"]),
                title=str(t["title"]),
                duration=None if t["duration"] is None else float(t["duration"]),
            )
            for t in d["tracks"]
        ),
        _opt_str(d["error_code"]),
        _opt_str(d["error_message"]),
        _opt_ts(d["last_observed_at"]),
        None if source is None else _SOURCES[source],
        int(d["observations"]),
        int(d["late_observations"]),
        int(d["send_attempts"]),
        _SEND_STATES[d["send_state"]],
        _opt_ts(d["retry_at"]),
        None if step is None else _CLIP_STEPS[step],
        _opt_str(d["clip_url"]),
        _opt_str(d["captions_url"]),
    )


def decode_state(document: str | bytes | dict[str, Any]) -> JobState:
    """The job a projection document holds; a broken one raises StoreCorrupt."""
    try:
        data = json.loads(document) if isinstance(document, str | bytes) else document
        try:
            return _fast_state(data)
        except Exception:  # cattrs decides: it fills defaults, or says what is wrong
            return _CONVERTER.structure(data, JobState)
    except (ValueError, TypeError, KeyError, cattrs.BaseValidationError) as exc:
        raise StoreCorrupt(f"unreadable job projection: {exc}") from exc
