"""The settings issue #24 added: connection bounds, and Suno keys too short to redact."""

from __future__ import annotations

import pytest
from _core_harness import refusal

from clipjobs.app.config import Settings
from clipjobs.domain.errors import ConfigError


def test_connection_bounds_default_and_read() -> None:
    """CLIPJOBS_MAX_CONNECTIONS is 1000 and CLIPJOBS_HEAD_TIMEOUT_S 15 unless set."""
    assert (Settings.from_env({}).max_connections, Settings.from_env({}).head_timeout_s) == (
        1000,
        15.0,
    )
    s = Settings.from_env({"CLIPJOBS_MAX_CONNECTIONS": "50", "CLIPJOBS_HEAD_TIMEOUT_S": "2.5"})
    assert (s.max_connections, s.head_timeout_s) == (50, 2.5)


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"CLIPJOBS_MAX_CONNECTIONS": "0"}, "CLIPJOBS_MAX_CONNECTIONS"),
        ({"CLIPJOBS_MAX_CONNECTIONS": "lots"}, "CLIPJOBS_MAX_CONNECTIONS"),
        ({"CLIPJOBS_MAX_CONNECTIONS": "2.5"}, "CLIPJOBS_MAX_CONNECTIONS"),
        ({"CLIPJOBS_HEAD_TIMEOUT_S": "0"}, "CLIPJOBS_HEAD_TIMEOUT_S"),
        ({"CLIPJOBS_HEAD_TIMEOUT_S": "inf"}, "CLIPJOBS_HEAD_TIMEOUT_S"),
        ({"SUNO_API_KEY": "abc"}, "SUNO_API_KEY"),
        ({"SUNO_API_KEY": "  k3y-007  "}, "SUNO_API_KEY"),
    ],
)
def test_bad_bounds_give_one_clear_line(env: dict[str, str], needle: str) -> None:
    """Each bad value is a ConfigError of one line naming the variable."""
    assert needle in refusal(env)


def test_a_short_suno_key_is_refused_without_showing_it() -> None:
    """A 3-character key (which the log filter could never redact) stops start-up, unprinted."""
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"SUNO_API_KEY": "zq9"})
    assert "zq9" not in str(info.value)
    assert Settings.from_env({"SUNO_API_KEY": "k" * 8}).suno_api_key == "k" * 8
