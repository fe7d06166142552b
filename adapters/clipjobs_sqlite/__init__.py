"""clipjobs on SQLite (sqlite3, each connection on its own thread): the embedded default store.

``CLIPJOBS_DB=sqlite:///clipjobs.db`` selects it. One file holds the job
logs, their projection rows, the workers' leases, secrets and orphan
callbacks; concurrent appends are committed in groups, each durable before it
returns. See ``docs/storage.md`` for what survives a crash.
"""

from __future__ import annotations

from ._store import SQLiteEventStore, Synchronous
from ._url import parse_sqlite_url

__all__ = ["SQLiteEventStore", "Synchronous", "parse_sqlite_url"]
