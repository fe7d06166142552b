"""The application runtime around the domain.

``JobService`` and its ``Workers``, the Suno call budget, settings, metrics,
the ports (Protocols the adapters implement), the in-memory store, clocks,
logs, authentication, retention and webhook planning. It may use asyncio; it
imports no I/O library (the adapters in ``clipjobs_*`` do). The public names
are re-exported by :mod:`clipjobs`.
"""
