"""Captions through the whole job: JobService, the budgeted client, the fake Suno, ffmpeg, GET.

The job is generated on the fake Suno, polled to success, and rendered; what
happened to the captions is in the job (``captions_url``) and its history
(``ClipReady.note``), never in its error.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
from _ffmpeg_harness import ASYNC_WITH_FFMPEG, clip_service, fake_suno, processor

from clipjobs import (
    BudgetedSuno,
    ChannelDefaults,
    ClipReady,
    GenerationParams,
    JobRequest,
    JobState,
    Stage,
    SunoBudget,
    SystemClock,
)
from clipjobs.app.config import Settings
from clipjobs_cli._serve import running_server
from clipjobs_ffmpeg import CaptionsNote

pytestmark = ASYNC_WITH_FFMPEG


async def _rendered(
    session: aiohttp.ClientSession, media: Path, *, instrumental: bool, **fake_config: Any
) -> tuple[JobState, ClipReady]:
    """A job polled to success on the fake Suno and rendered: its state, and its ClipReady."""
    async with (
        fake_suno(scenario="no-callback") as (client, fake),
        SunoBudget(100.0, clock=SystemClock()) as budget,
    ):
        suno = BudgetedSuno(client, budget)
        service = clip_service(
            processor(session, media, suno=suno, style="full"),
            suno=suno,
            defaults=ChannelDefaults(GenerationParams(prompt="a song", instrumental=instrumental)),
            callback_base_url="http://127.0.0.1:9",
        )
        job_id = (await service.start_job(JobRequest("channel_ff", "u1"))).job.job_id
        await service.send(job_id)
        for _ in range(500):
            state = await service.poll(job_id)
            if state.stage is Stage.SUNO_SUCCESS:
                break
            await asyncio.sleep(0.01)
        fake.configure(**fake_config)
        await service.render(job_id)
        state = await service.store.load(job_id)
        assert state is not None
        log = await service.store.read(job_id)
        (ready,) = [r.event for r in log if isinstance(r.event, ClipReady)]
        return state, ready


async def test_lyrics_song_reaches_clip_ready_with_captions(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A song with lyrics: STAGE_70 with clip_url and captions_url, no note, no error."""
    state, ready = await _rendered(session, tmp_path, instrumental=False)
    job_id = state.job_id
    assert (state.stage, state.error_code) == (Stage.CLIP_READY, None)
    assert state.captions_url == f"/media/{job_id}.srt"
    assert (tmp_path / f"{job_id}.srt").is_file() and (tmp_path / f"{job_id}.ass").is_file()
    assert (ready.captions_url, ready.note) == (state.captions_url, None)


async def test_instrumental_job_has_no_captions_and_no_error(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """An instrumental: STAGE_70, no captions, no error; the history's note says it has no words."""
    state, ready = await _rendered(session, tmp_path, instrumental=True)
    assert (state.stage, state.error_code, state.captions_url) == (Stage.CLIP_READY, None, None)
    assert ready.note is not None and ready.note.startswith(CaptionsNote.CAPTIONS_NO_LYRICS)


async def test_failed_lyrics_call_is_in_the_history_not_the_error(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """Suno failing the lyrics call: the job still reaches STAGE_70; ClipReady's note says why."""
    state, ready = await _rendered(session, tmp_path, instrumental=False, lyrics_error_code=455)
    assert (state.stage, state.error_code) == (Stage.CLIP_READY, None)
    assert state.clip_url == f"/media/{state.job_id}.mp4" and state.captions_url is None
    assert ready.note is not None
    assert ready.note.startswith(CaptionsNote.CAPTIONS_LYRICS_FAILED) and "(code 455)" in ready.note


async def test_serve_wires_style_captions_and_the_budgeted_client(tmp_path: Path) -> None:
    """`clipjobs serve` (demo mode): a lyrics job's GET shows captionsUrl; both files are served."""
    settings = Settings(
        db_url=f"sqlite:///{tmp_path / 'clips.db'}",
        port=0,
        tokens={"token-for-tests": "u1"},
        clip_render=True,
        media_dir=tmp_path / "media",
        clip_max_s=2.0,
    )
    headers = {"Authorization": "Bearer token-for-tests"}
    async with running_server(settings) as server, aiohttp.ClientSession() as session:
        assert server.fake_suno is not None
        server.fake_suno.configure(text_after_s=0.05, first_after_s=0.1, complete_after_s=0.15)
        async with session.post(
            f"{server.url}/api/music-clips/channels/channel_ff/runOnce",
            json={"instrumental": False, "prompt": "a song about a quiet town"},
            headers=headers,
        ) as r:
            job_id = (await r.json())["jobId"]
        body: dict[str, Any] = {}
        for _ in range(600):
            async with session.get(
                f"{server.url}/api/music-clips/jobs/{job_id}", headers=headers
            ) as r:
                body = await r.json()
            if body["done"]:
                break
            await asyncio.sleep(0.05)
        assert body["stage"] == "STAGE_70_CLIP_READY", body
        assert body["captionsUrl"] == f"/media/{job_id}.srt"
        for suffix, kind in ((".srt", "application/x-subrip"), (".ass", "text/x-ssa")):
            async with session.get(server.url + f"/media/{job_id}{suffix}") as r:
                assert (r.status, r.content_type) == (200, kind)
                assert "Тихий" in await r.text()
