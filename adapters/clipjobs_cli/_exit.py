"""Exit codes of the ``clipjobs`` command."""

from __future__ import annotations

EXIT_OK = 0
#: The job ended in STAGE_90_FAILED.
EXIT_FAILED = 1
#: Bad usage or configuration.
EXIT_USAGE = 2
#: The job timed out (STAGE_99_TIMEOUT), or the client's own ``--timeout`` ran out.
EXIT_TIMEOUT = 3
#: Anything else: the server unreachable, a refused request, the store unavailable.
EXIT_ERROR = 4
