"""The webhook settings (SPEC 10.5): defaults, values read, bad values refused in one line."""

from __future__ import annotations

import pytest
from _core_harness import refusal

from clipjobs.app.config import Settings


def _webhook_settings(env: dict[str, str]) -> tuple[object, ...]:
    s = Settings.from_env(env)
    return (
        s.notify_allow_private,
        s.notify_backoff_s,
        s.notify_max_subscriptions,
        s.notify_timeout_s,
        s.notify_give_up_s,
    )


def test_webhook_settings_default_and_read() -> None:
    """Private targets off, 5 s first backoff, 10 subscriptions, 10 s timeout, 24 h give-up."""
    assert _webhook_settings({}) == (False, 5.0, 10, 10.0, 86400.0)
    read = _webhook_settings(
        {
            "CLIPJOBS_NOTIFY_ALLOW_PRIVATE": "on",
            "CLIPJOBS_NOTIFY_BACKOFF_S": "0.5",
            "CLIPJOBS_NOTIFY_MAX_SUBSCRIPTIONS": "3",
            "CLIPJOBS_NOTIFY_TIMEOUT_S": "2",
            "CLIPJOBS_NOTIFY_GIVE_UP_S": "60",
        }
    )
    assert read == (True, 0.5, 3, 2.0, 60.0)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CLIPJOBS_NOTIFY_ALLOW_PRIVATE", "maybe"),
        ("CLIPJOBS_NOTIFY_BACKOFF_S", "0"),
        ("CLIPJOBS_NOTIFY_BACKOFF_S", "soon"),
        ("CLIPJOBS_NOTIFY_MAX_SUBSCRIPTIONS", "0"),
        ("CLIPJOBS_NOTIFY_MAX_SUBSCRIPTIONS", "2.5"),
        ("CLIPJOBS_NOTIFY_TIMEOUT_S", "61"),
        ("CLIPJOBS_NOTIFY_GIVE_UP_S", "inf"),
    ],
)
def test_bad_webhook_settings_give_one_clear_line(name: str, value: str) -> None:
    """Each bad value is a ConfigError of one line naming the variable."""
    assert name in refusal({name: value})
