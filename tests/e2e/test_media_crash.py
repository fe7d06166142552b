"""``clipjobs serve`` killed with SIGKILL while it copies a song into media storage (SPEC 10.4).

The copy is written to a hidden part file and renamed only once complete, so the
kill leaves nothing half-written where files are served; the job still waits for
its copy, and the next life (default settings) takes it up and finishes it.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from _procs import SUNO_KEY, Serve, free_port, process_env, run_once
from clipjobs import MediaKind, Stage
from clipjobs_sqlite import SQLiteEventStore
from clipjobs_suno.fake import MEDIA_DIR, running_fake_suno

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]


class SlowCdn:
    """Serves the fake's files; while ``slow``, the audio trickles out 512 bytes at a time."""

    def __init__(self) -> None:
        self.slow = True
        self.trickling = asyncio.Event()
        self.app = web.Application()
        self.app.router.add_get("/files/{task}/{name}", self._file)

    async def _file(self, request: web.Request) -> web.StreamResponse:
        n, suffix = request.match_info["name"].split(".")
        if suffix == "mp3":
            data, kind = (MEDIA_DIR / f"track-{n}.mp3").read_bytes(), "audio/mpeg"
        else:
            data, kind = (MEDIA_DIR / f"cover-{n}.jpeg").read_bytes(), "image/jpeg"
        if not (self.slow and suffix == "mp3"):
            return web.Response(body=data, content_type=kind)
        response = web.StreamResponse(headers={"Content-Type": kind})
        response.content_length = len(data)
        await response.prepare(request)
        for i in range(0, len(data), 512):
            await response.write(data[i : i + 512])
            self.trickling.set()
            await asyncio.sleep(0.2)
        return response


def visible(media: Path) -> list[str]:
    kept = media / ".kept"
    return (
        sorted(p.name for p in kept.iterdir() if not p.name.startswith("."))
        if kept.exists()
        else []
    )


async def test_sigkill_mid_copy_leaves_no_partial_file_and_the_copy_finishes_after_restart(
    tmp_path: Path,
) -> None:
    """Killed while the first audio trickles in: no visible file in storage, the job still a
    success; restarted with default settings, all four files are kept with their sha256.
    """
    cdn = SlowCdn()
    runner = web.AppRunner(cdn.app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    cdn_port = runner.addresses[0][1]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    media = tmp_path / "media"
    db = tmp_path / "clipjobs.db"
    server: Serve | None = None
    try:
        async with running_fake_suno(
            api_key=SUNO_KEY,
            public_url=f"http://127.0.0.1:{cdn_port}",
            text_after_s=0.05,
            first_after_s=0.1,
            complete_after_s=0.15,
        ) as (fake_url, _):
            env = process_env(
                url,
                fake_url,
                f"sqlite:///{db}",
                CLIPJOBS_MEDIA_DIR=str(media),
                CLIPJOBS_CLIP_HOSTS=f"127.0.0.1:{cdn_port}",
            )
            server = Serve(env, tmp_path)
            await server.start()
            async with aiohttp.ClientSession() as http:
                job_id = await run_once(http, url, "crash")
            async with asyncio.timeout(60):
                await cdn.trickling.wait()
            await asyncio.sleep(0.5)  # a few chunks are in the part file
            await server.kill()
            assert visible(media) == []
            async with SQLiteEventStore(db) as store:
                state = await store.load(job_id)
            assert state is not None and state.stage is Stage.SUNO_SUCCESS
            assert state.media == ()

            cdn.slow = False
            await server.start()
            async with SQLiteEventStore(db) as store, asyncio.timeout(60):
                while state is None or len(state.media) < 4:
                    await asyncio.sleep(0.1)
                    state = await store.load(job_id)
            await server.stop()
    finally:
        if server is not None:
            await server.ensure_dead()
        await runner.cleanup()
    expected = set()
    for n in ("1", "2"):
        expected.add(hashlib.sha256((MEDIA_DIR / f"track-{n}.mp3").read_bytes()).hexdigest())
        expected.add(hashlib.sha256((MEDIA_DIR / f"cover-{n}.jpeg").read_bytes()).hexdigest())
    assert {m.sha256 for m in state.media} == expected
    assert {m.kind for m in state.media} == {MediaKind.AUDIO, MediaKind.IMAGE}
    assert len(visible(media)) == 4
    for name in visible(media):
        assert hashlib.sha256((media / ".kept" / name).read_bytes()).hexdigest() == name[:64]
