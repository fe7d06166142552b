"""Testing helpers that ship with clipjobs: strategies, the store and budget contracts, fakes.

Importing this module needs ``pytest`` and ``hypothesis`` (the ``dev`` extra).
"""

from __future__ import annotations

from . import strategies
from ._budget_contract import BudgetContract, BudgetFactory
from ._notify_contract import NotifyStoreContract
from ._store_contract import EventStoreContract, new_job, step
from ._suno_contract import SunoClientContract
from .fakes import ScriptedSuno

__all__ = [
    "BudgetContract",
    "BudgetFactory",
    "EventStoreContract",
    "NotifyStoreContract",
    "ScriptedSuno",
    "SunoClientContract",
    "new_job",
    "step",
    "strategies",
]
