"""Fixtures for the HTTP tests: a real server on 127.0.0.1 port 0."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from _http_harness import Api, running_api


@pytest_asyncio.fixture
async def api() -> AsyncIterator[Api]:
    async with running_api() as running:
        yield running
