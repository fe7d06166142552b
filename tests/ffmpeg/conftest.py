"""Fixtures for the ffmpeg adapter's tests: a media server, a client session, a media dir."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from _ffmpeg_harness import MediaServer, media_server


@pytest_asyncio.fixture
async def server() -> AsyncIterator[MediaServer]:
    async with media_server() as running:
        yield running


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
def media_dir(tmp_path: Path) -> Path:
    return tmp_path / "media"
