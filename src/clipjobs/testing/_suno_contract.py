"""``SunoClientContract``: what every ``SunoClient``, with the Suno behind it, guarantees.

Subclass it, override the ``suno`` fixture (an async fixture yielding a client
wired to a fresh Suno-like service in its default configuration) and
implement the hooks:

- ``callback_url()``: where the service should POST callbacks;
- ``configure(**config)``: change the service's behaviour, with the names of
  the fake Suno's ``POST /_fake/config`` (``scenario``, ``credits``,
  ``text_after_s``, ``first_after_s``, ``complete_after_s``, ``error_code``,
  ``error_http``, ``rate_limit``, ``rate_window_s``);
- ``advance(seconds)``: let that much of the service's time pass;
- ``callbacks(task_id)``: the callback bodies delivered for a task so far,
  once every callback that is due has been delivered.

The limits and payloads below are Suno's documented ones, written out here
on purpose rather than imported, so that an implementation cannot drift from
them unnoticed. This module imports no I/O library.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import pytest
import pytest_asyncio

from ..app.ports import SunoClient
from ..domain.errors import (
    InvalidRequest,
    SunoError,
    SunoNoCredits,
    SunoProtocolError,
    SunoRateLimited,
    SunoRejected,
    SunoTransient,
)
from ..domain.events import GenerationParams, Observation, ProviderStatus

__all__ = ["SunoClientContract"]

_PARAMS = GenerationParams(prompt="a calm song about the sea", model="V4_5")

# (model, prompt, style, title) limits in custom mode, from Suno's reference.
_LIMITS = [
    ("V3_5", 3000, 200, 80),
    ("V4", 3000, 200, 80),
    ("V4_5ALL", 5000, 1000, 80),
    ("V4_5", 5000, 1000, 100),
    ("V4_5PLUS", 5000, 1000, 100),
    ("V5", 5000, 1000, 100),
    ("V5_5", 5000, 1000, 100),
]

# Synchronous codes and what a client must raise for them.
_CODES = [
    (400, SunoRejected),
    (401, SunoRejected),
    (405, SunoRateLimited),
    (413, SunoRejected),
    (429, SunoNoCredits),
    (430, SunoRateLimited),
    (455, SunoTransient),
    (500, SunoTransient),
]

_TIMINGS = {"text_after_s": 1.0, "first_after_s": 2.0, "complete_after_s": 3.0}

_TASK = "2fac6c8a1b2c3d4e5f60718293a49f72"

_FIRST_CALLBACK: dict[str, Any] = {
    "code": 200,
    "msg": "First audio generated successfully.",
    "data": {
        "callbackType": "first",
        "task_id": _TASK,
        "data": [
            {
                "id": "e322aa1b",
                "audio_url": "https://cdn.example/a.mp3",
                "stream_audio_url": "https://cdn.example/s",
                "image_url": "https://cdn.example/c.jpeg",
                "prompt": "[Verse] ...",
                "model_name": "chirp-v3-5",
                "title": "Whispering Tides",
                "tags": "relaxing, soft",
                "createTime": 1758044664461,
                "duration": 163.88,
            },
            {
                "id": "5ee8bb2c",
                "audio_url": "",
                "stream_audio_url": "https://cdn.example/s2",
                "image_url": "https://cdn.example/c2.jpeg",
                "createTime": 1758044664461,
            },
        ],
    },
}


def _callback(kind: str, data: object, code: int = 200, msg: str = "ok") -> dict[str, Any]:
    return {
        "code": code,
        "msg": msg,
        "data": {"callbackType": kind, "task_id": _TASK, "data": data},
    }


class SunoClientContract:
    """Behaviour every SunoClient guarantees. Override ``suno`` and the hooks."""

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.asyncio]

    @pytest_asyncio.fixture
    async def suno(self) -> SunoClient:  # pragma: no cover - overridden
        raise NotImplementedError("subclasses provide a client (an async fixture)")

    # --- hooks ---------------------------------------------------------------

    def callback_url(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    async def configure(self, **config: Any) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    async def advance(self, seconds: float) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    async def callbacks(self, task_id: str) -> list[Mapping[str, Any]]:  # pragma: no cover
        raise NotImplementedError

    # --- helpers -------------------------------------------------------------

    async def _start(self, suno: SunoClient, **config: Any) -> str:
        await self.configure(**{**_TIMINGS, **config})
        return await suno.generate(_PARAMS, self.callback_url())

    async def _parsed_callbacks(self, suno: SunoClient, task_id: str) -> list[Observation]:
        return [suno.parse_callback(body) for body in await self.callbacks(task_id)]

    # --- generate and record-info --------------------------------------------

    async def test_generate_returns_a_task_that_starts_pending(self, suno: SunoClient) -> None:
        """generate answers a task id at once; record-info then says PENDING with no tracks."""
        task_id = await self._start(suno, scenario="success")
        assert isinstance(task_id, str) and task_id
        observation = await suno.record_info(task_id)
        assert observation == Observation(task_id, ProviderStatus.PENDING)

    async def test_record_info_walks_text_first_success(self, suno: SunoClient) -> None:
        """record-info goes PENDING → TEXT_SUCCESS → FIRST_SUCCESS (one track ready) → SUCCESS."""
        task_id = await self._start(suno, scenario="success")
        await self.advance(1.0)
        assert (await suno.record_info(task_id)).status is ProviderStatus.TEXT_SUCCESS
        await self.advance(1.0)
        first = await suno.record_info(task_id)
        assert first.status is ProviderStatus.FIRST_SUCCESS
        assert len(first.tracks) == 2
        assert first.tracks[0].audio_url.startswith("http")
        assert first.tracks[1].audio_url == ""
        await self.advance(1.0)
        done = await suno.record_info(task_id)
        assert done.status is ProviderStatus.SUCCESS
        assert len(done.tracks) == 2
        assert all(t.audio_url.startswith("http") and t.id for t in done.tracks)
        assert len({t.id for t in done.tracks}) == 2

    async def test_callbacks_arrive_text_first_complete(self, suno: SunoClient) -> None:
        """Callbacks come text → first → complete and parse to the statuses record-info shows."""
        task_id = await self._start(suno, scenario="success")
        await self.advance(3.0)
        observed = await self._parsed_callbacks(suno, task_id)
        assert [o.status for o in observed] == [
            ProviderStatus.TEXT_SUCCESS,
            ProviderStatus.FIRST_SUCCESS,
            ProviderStatus.SUCCESS,
        ]
        assert {o.task_id for o in observed} == {task_id}
        assert observed[1].tracks[1].audio_url == ""
        assert observed[2].tracks == (await suno.record_info(task_id)).tracks

    async def test_callbacks_come_only_when_due(self, suno: SunoClient) -> None:
        """Before text_after_s no callback has come; after it, only the text one."""
        task_id = await self._start(suno, scenario="success")
        assert await self.callbacks(task_id) == []
        await self.advance(1.0)
        observed = await self._parsed_callbacks(suno, task_id)
        assert [o.status for o in observed] == [ProviderStatus.TEXT_SUCCESS]

    @pytest.mark.parametrize(
        ("scenario", "after_s", "status"),
        [
            ("no-callback", 5.0, ProviderStatus.SUCCESS),
            ("stuck", 600.0, ProviderStatus.PENDING),
        ],
    )
    async def test_without_callbacks_only_polling_sees_the_task(
        self, suno: SunoClient, scenario: str, after_s: float, status: ProviderStatus
    ) -> None:
        """Nothing is called back: with callbacks lost polling alone sees the task succeed, and
        a stuck task is PENDING however long one waits.
        """
        task_id = await self._start(suno, scenario=scenario)
        await self.advance(after_s)
        assert (await suno.record_info(task_id)).status is status
        assert await self.callbacks(task_id) == []

    async def test_duplicate_callbacks_repeat_each_stage(self, suno: SunoClient) -> None:
        """Suno may call back more than once per stage; copies parse to equal observations."""
        task_id = await self._start(suno, scenario="duplicate-callbacks")
        await self.advance(3.0)
        observed = await self._parsed_callbacks(suno, task_id)
        for status in (
            ProviderStatus.TEXT_SUCCESS,
            ProviderStatus.FIRST_SUCCESS,
            ProviderStatus.SUCCESS,
        ):
            copies = [o for o in observed if o.status is status]
            assert len(copies) >= 2
            assert all(c == copies[0] for c in copies)

    async def test_generate_failed_reports_failure_with_code(self, suno: SunoClient) -> None:
        """A failed generation is GENERATE_AUDIO_FAILED with Suno's code, polled or called back."""
        task_id = await self._start(suno, scenario="generate-failed")
        await self.advance(1.0)
        assert (await suno.record_info(task_id)).status is ProviderStatus.TEXT_SUCCESS
        await self.advance(2.0)
        polled = await suno.record_info(task_id)
        assert polled.status is ProviderStatus.GENERATE_AUDIO_FAILED
        assert polled.error_code is not None and polled.error_message
        last = (await self._parsed_callbacks(suno, task_id))[-1]
        assert last.status is ProviderStatus.GENERATE_AUDIO_FAILED
        assert last.error_code is not None and last.error_message

    async def test_sensitive_word_is_its_own_failure(self, suno: SunoClient) -> None:
        """Moderation is SENSITIVE_WORD_ERROR both in record-info and in the error callback."""
        task_id = await self._start(suno, scenario="sensitive-word")
        await self.advance(3.0)
        polled = await suno.record_info(task_id)
        assert polled.status is ProviderStatus.SENSITIVE_WORD_ERROR
        assert polled.error_message
        observed = await self._parsed_callbacks(suno, task_id)
        assert [o.status for o in observed] == [ProviderStatus.SENSITIVE_WORD_ERROR]

    async def test_unknown_task_is_a_suno_error(self, suno: SunoClient) -> None:
        """record-info for a task Suno never made raises a SunoError, not a crash."""
        await self.configure(scenario="success")
        with pytest.raises(SunoError):
            await suno.record_info("0" * 32)

    # --- credits -------------------------------------------------------------

    async def test_credits_are_reported_and_spent(self, suno: SunoClient) -> None:
        """credits() reports the balance, and a generate request spends some of it."""
        await self.configure(credits=7)
        assert await suno.credits() == 7
        await self._start(suno)
        assert 0 <= await suno.credits() < 7

    async def test_no_credits_refuses_generate(self, suno: SunoClient) -> None:
        """With 0 credits generate raises SunoNoCredits (code 429) and credits() says 0."""
        await self.configure(credits=0)
        with pytest.raises(SunoNoCredits) as caught:
            await suno.generate(_PARAMS, self.callback_url())
        assert caught.value.code == 429
        assert await suno.credits() == 0

    # --- errors --------------------------------------------------------------

    @pytest.mark.parametrize(("code", "error"), _CODES)
    @pytest.mark.parametrize("as_http_status", [False, True])
    async def test_every_code_maps_to_its_error(
        self, suno: SunoClient, code: int, error: type[SunoError], as_http_status: bool
    ) -> None:
        """Each documented code raises its error, in the body at HTTP 200 or as the HTTP status."""
        await self.configure(error_code=code, error_http=as_http_status)
        with pytest.raises(error) as generating:
            await suno.generate(_PARAMS, self.callback_url())
        assert generating.value.code == code
        if isinstance(generating.value, SunoTransient):
            # Suno answered: it did not act on the request.
            assert generating.value.maybe_sent is False
        with pytest.raises(error):
            await suno.record_info("0" * 32)
        with pytest.raises(error):
            await suno.credits()
        with pytest.raises(error):
            await suno.timestamped_lyrics("0" * 32, "e322aa1b")

    async def test_rate_limited_scenario(self, suno: SunoClient) -> None:
        """While rate limited every call raises SunoRateLimited, a retryable error (code 430)."""
        await self.configure(scenario="rate-limited")
        with pytest.raises(SunoRateLimited) as caught:
            await suno.generate(_PARAMS, self.callback_url())
        assert caught.value.code == 430
        assert caught.value.maybe_sent is False
        with pytest.raises(SunoRateLimited):
            await suno.credits()

    @pytest.mark.parametrize(("scenario", "code"), [("server-error", 500), ("maintenance", 455)])
    async def test_server_trouble_is_transient(
        self, suno: SunoClient, scenario: str, code: int
    ) -> None:
        """Server errors and maintenance are transient, not rate limits, and nothing was sent."""
        await self.configure(scenario=scenario)
        with pytest.raises(SunoTransient) as caught:
            await suno.generate(_PARAMS, self.callback_url())
        assert not isinstance(caught.value, SunoRateLimited)
        assert caught.value.code == code
        assert caught.value.maybe_sent is False

    async def test_rate_limit_window(self, suno: SunoClient) -> None:
        """Suno allows 20 calls per 10 s: the 21st in a window is refused, the next window works."""
        await self.configure(rate_limit=20, rate_window_s=10.0)
        refused_at = None
        for n in range(1, 26):
            try:
                await suno.credits()
            except SunoRateLimited:
                refused_at = n
                break
        assert refused_at is not None and refused_at <= 21
        await self.advance(10.0)
        assert await suno.credits() >= 0

    async def test_generate_refuses_invalid_params_without_spending(self, suno: SunoClient) -> None:
        """Params Suno would refuse raise SunoRejected from generate and spend no credit."""
        await self.configure(credits=5)
        with pytest.raises(SunoRejected):
            await suno.generate(GenerationParams(prompt="x" * 501), self.callback_url())
        assert await suno.credits() == 5

    # --- validation ------------------------------------------------------------

    @pytest.mark.parametrize(("model", "prompt", "style", "title"), _LIMITS)
    async def test_custom_mode_limits_per_model(
        self, suno: SunoClient, model: str, prompt: int, style: int, title: int
    ) -> None:
        """Each model accepts prompt/style/title up to its limit and refuses one character more."""
        at_limit = GenerationParams(
            prompt="p" * prompt, style="s" * style, title="t" * title, custom_mode=True, model=model
        )
        suno.validate(at_limit)
        for name, length in (("prompt", prompt), ("style", style), ("title", title)):
            over = {"prompt": at_limit.prompt, "style": at_limit.style, "title": at_limit.title}
            over[name] = "x" * (length + 1)
            with pytest.raises(InvalidRequest) as caught:
                suno.validate(
                    GenerationParams(
                        prompt=over["prompt"] or "",
                        style=over["style"],
                        title=over["title"],
                        custom_mode=True,
                        model=model,
                    )
                )
            assert caught.value.field == name

    async def test_non_custom_prompt_is_at_most_500(self, suno: SunoClient) -> None:
        """In non-custom mode the prompt is required and at most 500 characters, for any model."""
        suno.validate(GenerationParams(prompt="p" * 500, model="V5"))
        for prompt in ("p" * 501, "", "   "):
            with pytest.raises(InvalidRequest) as caught:
                suno.validate(GenerationParams(prompt=prompt, model="V5"))
            assert caught.value.field == "prompt"

    async def test_custom_mode_needs_style_and_title(self, suno: SunoClient) -> None:
        """Custom mode without a style or a title is refused, naming the field."""
        with pytest.raises(InvalidRequest) as caught:
            suno.validate(GenerationParams(prompt="la", title="t", custom_mode=True))
        assert caught.value.field == "style"
        with pytest.raises(InvalidRequest) as caught:
            suno.validate(GenerationParams(prompt="la", style="rock", custom_mode=True))
        assert caught.value.field == "title"
        # Instrumental custom mode needs no lyrics.
        suno.validate(
            GenerationParams(style="rock", title="t", custom_mode=True, instrumental=True)
        )

    async def test_unknown_model_is_refused(self, suno: SunoClient) -> None:
        """A model Suno does not have is refused with field "model"."""
        with pytest.raises(InvalidRequest) as caught:
            suno.validate(GenerationParams(prompt="a song", model="V9"))
        assert caught.value.field == "model"

    # --- timestamped lyrics -----------------------------------------------------

    async def _finished(self, suno: SunoClient, params: GenerationParams) -> Observation:
        await self.configure(**_TIMINGS, scenario="success")
        task_id = await suno.generate(params, self.callback_url())
        await self.advance(3.0)
        done = await suno.record_info(task_id)
        assert done.status is ProviderStatus.SUCCESS
        return done

    async def test_timestamped_lyrics_of_a_song(self, suno: SunoClient) -> None:
        """Each track's words come in order, inside the song, tagged by section, with a waveform."""
        done = await self._finished(suno, _PARAMS)
        for track in done.tracks:
            lyrics = await suno.timestamped_lyrics(done.task_id, track.id)
            words = lyrics.aligned_words
            assert words, "a song with lyrics has aligned words"
            assert any(w.word.lstrip().startswith("[") for w in words), "no section tag"
            starts = [w.start_s for w in words]
            assert starts == sorted(starts)
            assert all(0 <= w.start_s <= w.end_s for w in words)
            if track.duration is not None:
                assert words[-1].end_s <= track.duration
            assert lyrics.waveform and all(0.0 <= v <= 1.0 for v in lyrics.waveform)

    async def test_custom_lyrics_are_what_is_sung(self, suno: SunoClient) -> None:
        """In custom mode the aligned words are the request's lyrics, from the start, tags aside."""
        lyrics = "[Verse]\nSalt on the wind tonight\n[Chorus]\nSing it low"
        params = GenerationParams(
            prompt=lyrics, style="folk", title="Salt", custom_mode=True, model="V4_5"
        )
        done = await self._finished(suno, params)
        got = await suno.timestamped_lyrics(done.task_id, done.tracks[0].id)
        sung = [w.word.split("\n")[-2 if w.word.endswith("\n") else -1] for w in got.aligned_words]
        expected = [t for t in lyrics.split() if not t.startswith("[")]
        assert sung and sung == expected[: len(sung)]

    async def test_instrumental_has_no_words(self, suno: SunoClient) -> None:
        """An instrumental track has no aligned words, and the call is not an error."""
        params = GenerationParams(prompt="calm piano", instrumental=True, model="V4_5")
        done = await self._finished(suno, params)
        lyrics = await suno.timestamped_lyrics(done.task_id, done.tracks[0].id)
        assert lyrics.aligned_words == ()

    async def test_timestamped_lyrics_of_unknown_task_or_track(self, suno: SunoClient) -> None:
        """Lyrics of a task Suno never made, or of a track not in the task, raise a SunoError."""
        done = await self._finished(suno, _PARAMS)
        with pytest.raises(SunoError):
            await suno.timestamped_lyrics("0" * 32, done.tracks[0].id)
        with pytest.raises(SunoError):
            await suno.timestamped_lyrics(done.task_id, "not-a-track-of-it")

    # --- callbacks as Suno sends them -----------------------------------------

    async def test_parses_the_documented_callbacks(self, suno: SunoClient) -> None:
        """The notes' text/first/complete/error payloads parse to their statuses (snake_case)."""
        text = suno.parse_callback(_callback("text", [], msg="Text generation completed."))
        assert text == Observation(_TASK, ProviderStatus.TEXT_SUCCESS)
        first = suno.parse_callback(_FIRST_CALLBACK)
        assert first.status is ProviderStatus.FIRST_SUCCESS
        assert [t.audio_url for t in first.tracks] == ["https://cdn.example/a.mp3", ""]
        assert first.tracks[0].title == "Whispering Tides"
        assert first.tracks[0].duration == pytest.approx(163.88)
        assert first.tracks[1].stream_audio_url == "https://cdn.example/s2"
        error = suno.parse_callback(
            _callback("error", None, code=400, msg="Music generation failed")
        )
        assert error.status is ProviderStatus.GENERATE_AUDIO_FAILED
        assert (error.error_code, error.error_message) == (400, "Music generation failed")

    async def test_create_time_in_either_form(self, suno: SunoClient) -> None:
        """createTime as the documented string or as real epoch ms parses the same."""
        as_ms = _callback("complete", [{"id": "a", "audio_url": "u", "createTime": 1758044664461}])
        as_text = _callback(
            "complete", [{"id": "a", "audio_url": "u", "createTime": "2025-01-01 00:00:00"}]
        )
        assert suno.parse_callback(as_ms) == suno.parse_callback(as_text)

    @pytest.mark.parametrize("data", [None, []])
    async def test_empty_track_lists(self, suno: SunoClient, data: object) -> None:
        """data.data may be null or [] on any callback type."""
        for kind in ("text", "first", "complete"):
            assert suno.parse_callback(_callback(kind, data)).tracks == ()

    async def test_callbacks_are_read_in_snake_case(self, suno: SunoClient) -> None:
        """A callback's track URLs are read from audio_url/stream_audio_url/image_url."""
        body = _callback(
            "complete",
            [
                {
                    "id": "a",
                    "audio_url": "A",
                    "stream_audio_url": "S",
                    "image_url": "I",
                    "title": "T",
                }
            ],
        )
        (track,) = suno.parse_callback(body).tracks
        assert (track.audio_url, track.stream_audio_url, track.image_url) == ("A", "S", "I")

    @pytest.mark.parametrize(
        "payload",
        [
            None,
            [],
            "text",
            {},
            {"code": 200, "msg": "x"},
            {"code": 200, "data": {"callbackType": "text"}},
            {"code": 200, "data": {"callbackType": "bogus", "task_id": _TASK}},
            {"code": "200", "data": {"callbackType": "text", "task_id": _TASK, "data": []}},
            {"code": 200, "data": {"callbackType": "first", "task_id": _TASK, "data": [1]}},
            {"code": 200, "data": {"callbackType": "first", "task_id": _TASK, "data": {}}},
        ],
    )
    async def test_unreadable_callbacks_raise_protocol_error(
        self, suno: SunoClient, payload: Any
    ) -> None:
        """Anything that is not a Suno callback raises SunoProtocolError, never another error."""
        with pytest.raises(SunoProtocolError):
            suno.parse_callback(payload)
