"""clipjobs_cli: the composition root and the ``clipjobs`` command.

``clipjobs serve`` reads SPEC section 8's environment (``Settings.from_env``)
and runs :func:`running_server`; embed the same composition in a test or a
script with ``async with running_server(settings) as server: server.url``.
"""

from __future__ import annotations

from ._serve import RunningServer, open_store, running_server
from .main import main

__all__ = ["RunningServer", "main", "open_store", "running_server"]
