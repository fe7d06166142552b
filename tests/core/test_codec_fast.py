"""``decode_state``'s hand-written fast path gives what cattrs gives, or steps aside for it."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clipjobs import Event, fold
from clipjobs.codec import _CONVERTER, _fast_state, decode_state, encode_state
from clipjobs.errors import StoreCorrupt
from clipjobs.state import JobState
from clipjobs.testing import strategies


def _same(a: JobState, b: JobState) -> None:
    # repr too: 86400 == 86400.0, but the body would show the difference.
    assert a == b
    assert repr(a) == repr(b)


@given(strategies.job_logs())
def test_fast_path_equals_cattrs_for_every_reachable_state(log: list[Event]) -> None:
    """For any state a log can reach, the fast path builds exactly what cattrs builds."""
    state = fold(log)
    data = json.loads(encode_state(state))
    _same(_fast_state(data), _CONVERTER.structure(data, JobState))
    # == only: the document does not keep a datetime's ``fold``, which repr shows.
    assert decode_state(encode_state(state)) == state


@given(strategies.job_logs(), st.data())
def test_fast_path_reads_every_field(log: list[Event], data: st.DataObject) -> None:
    """Drop any key: the fast path refuses (it never fills a default itself), cattrs decides."""
    document = json.loads(encode_state(fold(log)))
    key = data.draw(st.sampled_from(JobState._fields))
    del document[key]
    with pytest.raises(KeyError):
        _fast_state(document)
    if key in JobState._field_defaults:
        # An older document without a defaulted field still decodes, through cattrs.
        _same(decode_state(json.dumps(document)), _CONVERTER.structure(document, JobState))
    else:
        with pytest.raises(StoreCorrupt):
            decode_state(json.dumps(document))


@given(strategies.job_logs())
def test_nested_keys_are_required_too(log: list[Event]) -> None:
    """The nested objects' keys are read the same way: a missing one goes to cattrs."""
    state = fold(log)
    for outer, inner in (("params", "model"), ("policy", "clip_render")):
        document = json.loads(encode_state(state))
        del document[outer][inner]
        with pytest.raises(KeyError):
            _fast_state(document)
        # Both defaulted: cattrs fills them, as it always did.
        _same(decode_state(json.dumps(document)), _CONVERTER.structure(document, JobState))


@given(strategies.job_logs())
def test_values_are_converted_as_cattrs_converts_them(log: list[Event]) -> None:
    """A hand-edited document (an int where a float goes, a numeric string) decodes alike."""
    document = json.loads(encode_state(fold(log)))
    document["policy"]["poll_after_s"] = 30
    document["version"] = str(document["version"])
    _same(_fast_state(document), _CONVERTER.structure(document, JobState))
    assert decode_state(json.dumps(document)).policy.poll_after_s == 30.0


def test_broken_documents_still_raise_store_corrupt() -> None:
    """What was unreadable before is unreadable now, with cattrs' own reason."""
    for broken in ("{", "[]", '{"job_id": "x"}', "null"):
        with pytest.raises(StoreCorrupt):
            decode_state(broken)
