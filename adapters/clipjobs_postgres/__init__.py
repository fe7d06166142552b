"""clipjobs on PostgreSQL (asyncpg): many server processes, one database.

``CLIPJOBS_DB=postgresql://user@host/db`` selects it. Jobs, leases, the
change feed and the Suno budget (``PostgresCallBudget``) are shared by every
process using the same schema.
"""

from __future__ import annotations

from ._budget import PostgresCallBudget
from ._store import PostgresEventStore

__all__ = ["PostgresCallBudget", "PostgresEventStore"]
