"""The ``backend`` fixture: the store the end-to-end stack runs on.

SQLite always; PostgreSQL too when ``CLIPJOBS_TEST_PG_DSN`` names a server
(``.ci/run`` sets it), else that case skips and says why.
"""

from __future__ import annotations

import pytest

from _backends import BACKENDS


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value
