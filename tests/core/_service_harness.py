"""A JobService over the in-memory store, a scripted Suno and a fake clock, for the core tests."""

from __future__ import annotations

from typing import Any, TypeVar

from clipjobs import (
    ChannelDefaults,
    FakeClock,
    InMemoryEventStore,
    JobService,
    PostProcessor,
    ServiceConfig,
    WebhookSigner,
)
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
