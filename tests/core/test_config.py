"""Settings from the environment: defaults, validation, one clear line per mistake."""

from __future__ import annotations

import pytest
from _core_harness import refusal

from clipjobs.app.config import Settings
from clipjobs.domain.errors import ConfigError


def test_defaults_are_the_spec() -> None:
    """An empty environment gives SPEC section 8's defaults and demo mode."""
    s = Settings.from_env({})
    assert (s.db_url, s.port, s.suno_base_url) == (
        "sqlite:///clipjobs.db",
        8080,
        "https://api.sunoapi.org",
    )
    assert (s.stale_after_s, s.job_timeout_s, s.poll_after_s, s.poll_interval_s) == (
        60,
        600,
        30,
        15,
    )
    assert s.suno_max_rps == 2
    assert (s.worker_heartbeat_s, s.resend_uncertain_after_s, s.lease_s) == (5, 120, 60)
    assert (s.max_active_per_user, s.max_starts_per_user_per_hour) == (20, 0)
    assert s.policy().resend_uncertain_after_s == 120
    assert s.demo
    assert s.tokens is None
    assert not s.clip_render


def test_values_are_read() -> None:
    """Every variable is read and typed."""
    s = Settings.from_env(
        {
            "CLIPJOBS_DB": "postgresql://u@h/db",
            "CLIPJOBS_PORT": "9090",
            "SUNO_API_KEY": "sk-secret-key",
            "PUBLIC_BASE_URL": "https://clips.example/",
            "CLIPJOBS_TOKENS": "tok-aaaaaaaa=alice, tok-bbbbbbbb=bob",
            "CLIPJOBS_JOB_TIMEOUT_S": "120",
            "CLIPJOBS_JOB_MAX_S": "900",
            "CLIPJOBS_CLIP_RENDER": "on",
            "CLIPJOBS_LOG_FORMAT": "JSON",
        }
    )
    assert s.port == 9090
    assert s.public_base_url == "https://clips.example"
    assert s.tokens == {"tok-aaaaaaaa": "alice", "tok-bbbbbbbb": "bob"}
    assert s.policy().timeout_s == 120
    assert s.policy().max_s == 900
    assert s.policy().clip_render
    assert s.log_format == "json"
    assert not s.demo
    assert "sk-secret-key" not in repr(s)
    assert "tok-aaaaaaaa" not in repr(s)


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"CLIPJOBS_PORT": "eighty"}, "CLIPJOBS_PORT"),
        ({"CLIPJOBS_PORT": "70000"}, "between"),
        ({"CLIPJOBS_DB": "mysql://x"}, "CLIPJOBS_DB"),
        ({"PUBLIC_BASE_URL": "clips.example"}, "PUBLIC_BASE_URL"),
        ({"CLIPJOBS_TOKENS": "no-equals-sign"}, "CLIPJOBS_TOKENS"),
        ({"CLIPJOBS_TOKENS": "short=bob"}, "8+"),
        ({"CLIPJOBS_CLIP_RENDER": "maybe"}, "on or off"),
        ({"CLIPJOBS_JOB_TIMEOUT_S": "600", "CLIPJOBS_JOB_MAX_S": "300"}, "not be shorter"),
        ({"CLIPJOBS_JOB_MAX_S": "0"}, "CLIPJOBS_JOB_MAX_S"),
        ({"CLIPJOBS_CLIP_STYLE": "fancy"}, "simple or full"),
        ({"CLIPJOBS_CLIP_CAPTIONS": "karaoke"}, "CLIPJOBS_CLIP_CAPTIONS"),
        ({"CLIPJOBS_STALE_AFTER_S": "nan"}, "CLIPJOBS_STALE_AFTER_S"),
        ({"SUNO_MODEL": "V9"}, "SUNO_MODEL"),
        ({"CLIPJOBS_LOG_LEVEL": "loud"}, "CLIPJOBS_LOG_LEVEL"),
        ({"CLIPJOBS_PG_SCHEMA": "x; drop"}, "CLIPJOBS_PG_SCHEMA"),
        ({"CLIPJOBS_PG_SCHEMA": "Clips"}, "CLIPJOBS_PG_SCHEMA"),
        ({"CLIPJOBS_PG_SCHEMA": "c" * 49}, "CLIPJOBS_PG_SCHEMA"),
        ({"CLIPJOBS_PG_SCHEMA": "1clips"}, "CLIPJOBS_PG_SCHEMA"),
        # A lease shorter than the Suno call would make a slow send look crashed.
        ({"CLIPJOBS_LEASE_S": "10"}, "between 31"),
        ({"CLIPJOBS_WORKER_HEARTBEAT_S": "0"}, "CLIPJOBS_WORKER_HEARTBEAT_S"),
        ({"CLIPJOBS_WORKER_HEARTBEAT_S": "-1"}, "CLIPJOBS_WORKER_HEARTBEAT_S"),
        ({"CLIPJOBS_WORKER_HEARTBEAT_S": "61"}, "CLIPJOBS_LEASE_S"),
        ({"CLIPJOBS_RESEND_UNCERTAIN_AFTER_S": "-5"}, "CLIPJOBS_RESEND_UNCERTAIN_AFTER_S"),
        ({"CLIPJOBS_MAX_ACTIVE_PER_USER": "0"}, "CLIPJOBS_MAX_ACTIVE_PER_USER"),
        ({"CLIPJOBS_MAX_ACTIVE_PER_USER": "-3"}, "CLIPJOBS_MAX_ACTIVE_PER_USER"),
        ({"CLIPJOBS_MAX_ACTIVE_PER_USER": "lots"}, "CLIPJOBS_MAX_ACTIVE_PER_USER"),
        ({"CLIPJOBS_MAX_STARTS_PER_USER_PER_HOUR": "-1"}, "CLIPJOBS_MAX_STARTS_PER_USER"),
    ],
)
def test_bad_values_give_one_clear_line(env: dict[str, str], needle: str) -> None:
    """Each bad value raises ConfigError with one line naming the problem."""
    assert needle in refusal(env)


def test_token_values_are_never_echoed() -> None:
    """A malformed token list is reported without printing the tokens."""
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"CLIPJOBS_TOKENS": "supersecretvalue"})
    assert "supersecretvalue" not in str(info.value)


def test_clip_style_and_captions() -> None:
    """The clip is ``full`` with captions unless CLIPJOBS_CLIP_STYLE/CAPTIONS say otherwise."""
    default = Settings.from_env({})
    assert (default.clip_style, default.clip_captions) == ("full", True)
    chosen = Settings.from_env({"CLIPJOBS_CLIP_STYLE": "Simple", "CLIPJOBS_CLIP_CAPTIONS": "off"})
    assert (chosen.clip_style, chosen.clip_captions) == ("simple", False)


def test_the_age_limit_defaults_to_30_minutes_or_the_timeout() -> None:
    """CLIPJOBS_JOB_MAX_S is 1800 unless the progress timeout is longer."""
    assert Settings.from_env({}).policy().max_s == 1800
    assert Settings.from_env({"CLIPJOBS_JOB_TIMEOUT_S": "3600"}).policy().max_s == 3600
