"""The job's stages (SPEC section 2) and the kinds of background work.

Which stages are terminal, and which work each waits for, follows from the
one machine (``clipjobs.domain._machine``).
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Stage", "Work"]


class Stage(StrEnum):
    """Where a job is; the strings are the public contract."""

    REQUEST_ACCEPTED = "STAGE_10_REQUEST_ACCEPTED"
    SUNO_REQUEST_SENT = "STAGE_20_SUNO_REQUEST_SENT"
    SUNO_TASK_CREATED = "STAGE_30_SUNO_TASK_CREATED"
    SUNO_PENDING = "STAGE_40_SUNO_PENDING"
    SUNO_SUCCESS = "STAGE_50_SUNO_SUCCESS"
    CLIP_PROCESSING = "STAGE_60_CLIP_PROCESSING"
    CLIP_READY = "STAGE_70_CLIP_READY"
    FAILED = "STAGE_90_FAILED"
    CANCELLED = "STAGE_98_CANCELLED"
    TIMEOUT = "STAGE_99_TIMEOUT"

    @property
    def number(self) -> int:
        """The stage's number (10, 20, ... 99): it never goes down in a job's life."""
        return int(self.value[6:8])


class Work(StrEnum):
    """What a background worker does to a job; stores index jobs by it."""

    SEND = "send"
    POLL = "poll"
    SWEEP = "sweep"
    RENDER = "render"
    #: Copy a succeeded job's tracks into media storage (also after a terminal stage).
    MEDIA = "media"
