"""What the core tests share: a JobService to drive, and the settings a bad value refuses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import pytest

from clipjobs import (
    ChannelDefaults,
    FakeClock,
    InMemoryEventStore,
    JobService,
    PostProcessor,
    ServiceConfig,
    WebhookSigner,
)
from clipjobs.app.config import Settings
from clipjobs.domain.errors import ConfigError
from clipjobs.testing import ScriptedSuno

#: Where the tests' jobs ask Suno to call back.
CALLBACK_BASE = "https://clips.example"

S = TypeVar("S", bound=ScriptedSuno)


def make_service(
    suno: S, *, post_processor: PostProcessor | None = None, **config: Any
) -> tuple[JobService, InMemoryEventStore, S, FakeClock]:
    """A service over a fresh store and clock calling ``suno`` back at ``CALLBACK_BASE``.

    ``config`` are more ``ServiceConfig`` fields (``policy``, ``max_active_per_user``…); a
    ``callback_base_url`` among them replaces ``CALLBACK_BASE``.
    """
    store = InMemoryEventStore()
    clock = FakeClock()
    service = JobService(
        store,
        suno,
        ChannelDefaults(),
        WebhookSigner("secret-for-tests"),
        clock=clock,
        config=ServiceConfig(**{"callback_base_url": CALLBACK_BASE, **config}),
        post_processor=post_processor,
    )
    return service, store, suno, clock


def refusal(env: Mapping[str, str]) -> str:
    """The message of the ConfigError ``env`` raises, checked to be one line."""
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    message = str(info.value)
    assert "\n" not in message
    return message
