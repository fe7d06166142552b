"""Identifiers: ``job_<epoch ms>_<random>`` and ``req_<epoch ms>_<random>`` (SPEC section 4)."""

from __future__ import annotations

import re
import secrets
from datetime import datetime

__all__ = ["JOB_ID_PATTERN", "new_job_id", "new_request_id"]

_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
JOB_ID_PATTERN = re.compile(r"^job_\d{13}_[a-z0-9]{6,32}$")


def _random(length: int = 10) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def _epoch_ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def new_job_id(at: datetime) -> str:
    return f"job_{_epoch_ms(at)}_{_random()}"


def new_request_id(at: datetime) -> str:
    return f"req_{_epoch_ms(at)}_{_random(8)}"
