"""Identifiers: ``job_<epoch ms>_<random>`` and ``req_<epoch ms>_<random>`` (SPEC section 4)."""

from __future__ import annotations

import random
import re
import secrets
from datetime import datetime

__all__ = ["JOB_ID_PATTERN", "new_job_id", "new_request_id"]

_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
JOB_ID_PATTERN = re.compile(r"^job_\d{13}_[a-z0-9]{6,32}$")


#: Request ids only correlate log lines: a seeded PRNG, no system call per request.
_correlation = random.Random(secrets.randbits(128))


def _random(length: int = 10, *, secret: bool = True) -> str:
    # One draw for the whole string: secrets.choice per character read
    # os.urandom once per character, a sixth of a GET's cost (bench/bench_http.py).
    top = len(_ALPHABET) ** length
    number = secrets.randbelow(top) if secret else _correlation.randrange(top)
    chars = []
    for _ in range(length):
        number, digit = divmod(number, len(_ALPHABET))
        chars.append(_ALPHABET[digit])
    return "".join(chars)


def _epoch_ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def new_job_id(at: datetime) -> str:
    return f"job_{_epoch_ms(at)}_{_random()}"


def new_request_id(at: datetime) -> str:
    return f"req_{_epoch_ms(at)}_{_random(8, secret=False)}"
