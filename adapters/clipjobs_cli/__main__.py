"""``python -m clipjobs_cli`` is the ``clipjobs`` command."""

from __future__ import annotations

from .main import main

raise SystemExit(main())
