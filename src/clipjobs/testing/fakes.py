"""An in-process ``SunoClient`` fake, scripted per test.

For the core's own tests and for users' unit tests. The faithful fake that
speaks HTTP like sunoapi.org lives in ``clipjobs_suno.fake``.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping
from typing import Any

from ..domain.errors import InvalidRequest, SunoError, SunoNoCredits, SunoProtocolError
from ..domain.events import GenerationParams, Observation, ProviderStatus, TimestampedLyrics, Track

__all__ = ["ScriptedSuno"]


class ScriptedSuno:
    """Answers from a script: queued errors, task statuses, a credit balance, lyrics.

    ``parse_callback`` takes ``{"task_id": ..., "status": ..., "audio_url": ...}``.
    ``timestamped_lyrics`` answers ``lyrics[audio_id]``, or no words (an
    instrumental) for a track it has no script for.
    """

    def __init__(self, *, credits: int = 100) -> None:
        self.credits_left = credits
        self.generate_errors: list[SunoError] = []
        self.poll_errors: list[SunoError] = []
        self.statuses: dict[str, ProviderStatus] = {}
        self.generated: list[tuple[GenerationParams, str, str]] = []
        self.polled: list[str] = []
        #: How many times ``credits`` was asked.
        self.credit_checks = 0
        self.generate_delay = 0.0
        self.max_prompt = 5000
        self.lyrics: dict[str, TimestampedLyrics] = {}
        self.lyrics_errors: list[SunoError] = []
        self.lyrics_asked: list[tuple[str, str]] = []

    def validate(self, params: GenerationParams) -> None:
        if len(params.prompt) > self.max_prompt:
            raise InvalidRequest(f"prompt is longer than {self.max_prompt}", field="prompt")

    async def generate(self, params: GenerationParams, callback_url: str) -> str:
        if self.generate_delay:
            await asyncio.sleep(self.generate_delay)
        if self.generate_errors:
            raise self.generate_errors.pop(0)
        if self.credits_left <= 0:
            raise SunoNoCredits("insufficient credits", code=429)
        self.credits_left -= 1
        task_id = secrets.token_hex(16)
        self.generated.append((params, callback_url, task_id))
        self.statuses[task_id] = ProviderStatus.PENDING
        return task_id

    def _observation(self, task_id: str, status: ProviderStatus) -> Observation:
        tracks: tuple[Track, ...] = ()
        if status is ProviderStatus.SUCCESS:
            tracks = (
                Track(f"{task_id}-1", audio_url=f"https://cdn.example/{task_id}-1.mp3"),
                Track(f"{task_id}-2", audio_url=f"https://cdn.example/{task_id}-2.mp3"),
            )
        return Observation(task_id, status, tracks)

    async def record_info(self, task_id: str) -> Observation:
        self.polled.append(task_id)
        if self.poll_errors:
            raise self.poll_errors.pop(0)
        status = self.statuses.get(task_id)
        if status is None:
            raise SunoError(f"unknown task {task_id}", code=400)
        return self._observation(task_id, status)

    async def credits(self) -> int:
        self.credit_checks += 1
        return self.credits_left

    async def timestamped_lyrics(self, task_id: str, audio_id: str) -> TimestampedLyrics:
        self.lyrics_asked.append((task_id, audio_id))
        if self.lyrics_errors:
            raise self.lyrics_errors.pop(0)
        if task_id not in self.statuses:
            raise SunoError(f"unknown task {task_id}", code=400)
        return self.lyrics.get(audio_id, TimestampedLyrics())

    def callback(self, task_id: str, status: ProviderStatus) -> dict[str, Any]:
        """A callback body this fake's ``parse_callback`` reads."""
        return {"task_id": task_id, "status": status.value}

    def parse_callback(self, payload: Mapping[str, Any]) -> Observation:
        try:
            return self._observation(str(payload["task_id"]), ProviderStatus(payload["status"]))
        except (KeyError, ValueError) as exc:
            raise SunoProtocolError(f"not a scripted callback: {exc}") from exc
