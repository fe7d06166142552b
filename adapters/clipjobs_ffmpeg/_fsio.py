"""Blocking file-system calls, run off the event loop, with one translation of their errors."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from clipjobs.domain.errors import PostProcessError

from ._codes import ClipErrorCode

__all__ = ["off_loop"]

_T = TypeVar("_T")


async def off_loop(call: Callable[[], _T]) -> _T:
    """Run ``call`` in a thread; an OSError (disk full, read-only media dir) fails the render."""
    try:
        return await asyncio.to_thread(call)
    except OSError as exc:
        raise PostProcessError(
            ClipErrorCode.CLIP_RENDER_FAILED.value,
            f"media directory: {exc.strerror or exc}",
        ) from exc
