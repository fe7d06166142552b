"""clipjobs on PostgreSQL (asyncpg): many server processes, one database.

``CLIPJOBS_DB=postgresql://user@host/db`` selects it. Jobs, leases and the
change feed are shared by every process using the same schema.
"""

from __future__ import annotations

from ._store import PostgresEventStore

__all__ = ["PostgresEventStore"]
