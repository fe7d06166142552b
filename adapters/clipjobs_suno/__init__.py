"""clipjobs_suno: the sunoapi.org client, and (in ``clipjobs_suno.fake``) a faithful fake Suno.

``SunoApiClient`` implements the core's ``SunoClient`` port over one
``aiohttp.ClientSession``. ``parse_callback`` and ``parse_record_info`` turn
Suno's payloads into :class:`clipjobs.domain.events.Observation`,
``parse_timestamped_lyrics`` into :class:`clipjobs.domain.events.TimestampedLyrics`. The fake server
(``clipjobs_suno.fake.FakeSuno``) is imported separately: a production
process needs only the client.
"""

from __future__ import annotations

from ._client import DEFAULT_BASE_URL, SunoApiClient, SunoTimeouts
from ._limits import MODELS, NON_CUSTOM_PROMPT_MAX, Limits, limits_for
from ._parse import parse_callback, parse_record_info, parse_timestamped_lyrics

__all__ = [
    "DEFAULT_BASE_URL",
    "MODELS",
    "NON_CUSTOM_PROMPT_MAX",
    "Limits",
    "SunoApiClient",
    "SunoTimeouts",
    "limits_for",
    "parse_callback",
    "parse_record_info",
    "parse_timestamped_lyrics",
]
