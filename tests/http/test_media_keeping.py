"""SPEC 10.4: a succeeded job's audio and covers are copied into media storage, over real HTTP.

``clipjobs serve``'s own composition runs in this process against a fake Suno
whose file URLs point at a stand-in CDN (``_cdn``), so each test decides how
the CDN answers: well, failing then recovering, or with what must be refused.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from _cdn import cdn_and_fake, sha, source
from _serving import TOKEN, Served, get, served, status_of

from clipjobs import JobState, MediaKind, Stage, Work
from clipjobs_aiohttp import MediaUrlSigner

pytestmark = pytest.mark.asyncio

AUTH = {"Authorization": f"Bearer {TOKEN}"}
FILES = ["1.mp3", "1.jpeg", "2.mp3", "2.jpeg"]


async def start(http: aiohttp.ClientSession, running: Served) -> str:
    url = f"{running.server.url}/api/music-clips/channels/media_test/runOnce"
    async with http.post(url, headers=AUTH) as response:
        assert response.status == 202, await response.text()
        job_id: str = (await response.json())["jobId"]
        return job_id


async def get_job(http: aiohttp.ClientSession, running: Served, job_id: str) -> dict[str, Any]:
    async with http.get(f"{running.server.url}/api/music-clips/jobs/{job_id}", headers=AUTH) as r:
        assert r.status == 200
        body: dict[str, Any] = await r.json()
        return body


async def until(
    running: Served, job_id: str, done: Callable[[JobState], bool], limit_s: float = 60
) -> JobState:
    """The job once ``done`` holds for it (polled off the store; bounded, not timed)."""
    async with asyncio.timeout(limit_s):
        while True:
            state = await running.server.store.load(job_id)
            if state is not None and done(state):
                return state
            await asyncio.sleep(0.05)


def kept_files(media: Path) -> list[str]:
    """The names in media storage, hidden part files included."""
    kept = media / ".kept"
    return sorted(p.name for p in kept.iterdir()) if kept.exists() else []


async def test_both_tracks_audio_and_covers_are_kept_with_their_sha256(tmp_path: Path) -> None:
    """After success each track's audio and cover is copied once, named by its sha256, and the
    job records one MediaStored per file without leaving its stage.
    """
    async with (
        cdn_and_fake() as (cdn, fake),
        served(tmp_path, **fake) as running,
        aiohttp.ClientSession() as http,
    ):
        job_id = await start(http, running)
        state = await until(running, job_id, lambda s: len(s.media) == 4)
        body = await get_job(http, running, job_id)
        history_url = f"{running.server.url}/api/music-clips/jobs/{job_id}/history"
        async with http.get(history_url, headers=AUTH) as r:
            history = await r.json()
    assert state.stage is Stage.SUNO_SUCCESS and state.work is None
    assert body["stage"] == Stage.SUNO_SUCCESS.value and body["mediaError"] is None
    expected = {}
    for track, n in zip(state.tracks, ("1", "2"), strict=True):
        expected[(track.id, MediaKind.AUDIO)] = source(f"{n}.mp3")
        expected[(track.id, MediaKind.IMAGE)] = source(f"{n}.jpeg")
    for kept in state.media:
        data = expected.pop((kept.track_id, kept.kind))
        assert kept.sha256 == sha(data) and kept.bytes == len(data)
        suffix = ".mp3" if kept.kind is MediaKind.AUDIO else ".jpg"
        assert (tmp_path / "media" / ".kept" / f"{kept.sha256}{suffix}").read_bytes() == data
    assert expected == {}
    assert not any(name.startswith(".") for name in kept_files(tmp_path / "media"))
    events = [e["type"] for e in history["events"]]
    assert events.count("MediaStored") == 4 and events[-4:] == ["MediaStored"] * 4
    assert all(cdn.hits[name] == 1 for name in FILES)


async def test_a_failing_file_server_is_retried_until_it_recovers(tmp_path: Path) -> None:
    """While the CDN answers 503 the job stays a success and GET shows mediaError; the copy is
    tried again after a wait and, once the CDN is back, every file is kept.
    """
    async with cdn_and_fake() as (cdn, fake), served(tmp_path, **fake) as running:
        cdn.fail_next = 1_000_000
        async with aiohttp.ClientSession() as http:
            job_id = await start(http, running)
            failing = await until(running, job_id, lambda s: s.media_error_code is not None)
            body = await get_job(http, running, job_id)
            assert body["stage"] == Stage.SUNO_SUCCESS.value and body["error"] is None
            assert body["mediaError"]["code"] == "CLIP_DOWNLOAD_FAILED"
            assert "503" in body["mediaError"]["message"]
            assert failing.work is Work.MEDIA and failing.media_retry_at is not None
            assert failing.media_retry_at > failing.updated_at
            cdn.fail_next = 0
            state = await until(running, job_id, lambda s: len(s.media) == 4)
            body = await get_job(http, running, job_id)
    assert body["mediaError"] is None and state.work is None
    assert {m.sha256 for m in state.media} == {sha(source(n)) for n in FILES}


async def test_refused_files_are_given_up_with_a_clear_error_and_nothing_else_changes(
    tmp_path: Path,
) -> None:
    """HTML instead of audio, a 2 GB Content-Length and a redirect to a host not allowed are
    each refused at once (no retry, nothing stored, no part file left); the good file is kept
    and the job's success stands.
    """
    async with cdn_and_fake() as (cdn, fake), served(tmp_path, **fake) as running:
        cdn.modes.update({"1.mp3": "html", "1.jpeg": "huge", "2.mp3": "elsewhere"})
        async with aiohttp.ClientSession() as http:
            job_id = await start(http, running)
            state = await until(running, job_id, lambda s: len(s.media) + len(s.media_skipped) == 4)
            await asyncio.sleep(0.3)  # a retry would be due by now if one were planned
            body = await get_job(http, running, job_id)
            log = running.log.getvalue()
    assert state.stage is Stage.SUNO_SUCCESS and state.work is None
    assert [(m.kind, m.sha256) for m in state.media] == [(MediaKind.IMAGE, sha(source("2.jpeg")))]
    assert kept_files(tmp_path / "media") == [f"{sha(source('2.jpeg'))}.jpg"]
    assert body["stage"] == Stage.SUNO_SUCCESS.value and body["error"] is None
    assert body["mediaError"] is not None
    assert cdn.hits["1.mp3"] == 1 and cdn.hits["1.jpeg"] == 1 and cdn.hits["2.mp3"] == 1
    for code in ("CLIP_BAD_CONTENT_TYPE", "CLIP_TOO_LARGE", "CLIP_HOST_NOT_ALLOWED"):
        assert code in log, code
    state_after = await _reload(tmp_path, job_id)
    assert state_after == state


async def _reload(tmp_path: Path, job_id: str) -> JobState | None:
    from clipjobs_sqlite import SQLiteEventStore

    async with SQLiteEventStore(tmp_path / "clipjobs.db") as store:
        return await store.load(job_id)


async def test_the_renderer_uses_the_kept_audio_instead_of_downloading_it_again(
    tmp_path: Path,
) -> None:
    """With post-processing on, the files are kept first and the clip is made from the kept
    copies: the CDN serves each file once.
    """
    async with (
        cdn_and_fake() as (cdn, fake),
        served(
            tmp_path, clip_render=True, clip_style="simple", clip_captions=False, **fake
        ) as running,
        aiohttp.ClientSession() as http,
    ):
        job_id = await start(http, running)
        state = await until(running, job_id, lambda s: s.done, limit_s=120)
    assert state.stage is Stage.CLIP_READY, state.error_message
    assert len(state.media) == 4
    assert all(cdn.hits[name] == 1 for name in FILES), cdn.hits


async def test_kept_files_are_served_at_signed_urls_with_ranges_and_refuse_forgeries(
    tmp_path: Path,
) -> None:
    """GET's tracks carry storedAudioUrl/storedImageUrl that play without a bearer header: the
    bytes with Content-Type, Content-Length, ETag and Cache-Control immutable; bytes 1000-1999
    as a 206; a forged, missing or expired signature is 403; traversal attempts are 404.
    """
    async with (
        cdn_and_fake() as (_cdn, fake),
        served(tmp_path, **fake) as running,
        aiohttp.ClientSession() as http,
    ):
        job_id = await start(http, running)
        await until(running, job_id, lambda s: len(s.media) == 4)
        body = await get_job(http, running, job_id)
        base = running.server.url
        audio = body["tracks"][0]["storedAudioUrl"]
        cover = body["tracks"][1]["storedImageUrl"]
        assert audio.startswith("/media/kept/") and cover.startswith("/media/kept/")
        data = source("1.mp3")
        async with http.get(base + audio) as r:
            assert r.status == 200
            assert r.headers["Content-Type"] == "audio/mpeg"
            assert r.headers["Content-Length"] == str(len(data))
            assert "immutable" in r.headers["Cache-Control"] and r.headers["ETag"]
            assert await r.read() == data
        async with http.get(base + audio, headers={"Range": "bytes=1000-1999"}) as r:
            assert r.status == 206
            assert r.headers["Content-Range"] == f"bytes 1000-1999/{len(data)}"
            assert await r.read() == data[1000:2000]
        async with http.get(base + cover) as r:
            assert r.status == 200 and r.headers["Content-Type"] == "image/jpeg"
            assert await r.read() == source("2.jpeg")

        path, _, query = audio.partition("?")
        params = dict(p.split("=") for p in query.split("&"))
        flipped = params["sig"][:-1] + ("0" if params["sig"][-1] != "0" else "1")
        secret = await running.server.store.ensure_secret("media-url", "unused")
        signer = MediaUrlSigner(secret)
        name = path.rsplit("/", 1)[1]
        past = int(time.time()) - 10
        expired = f"{path}?exp={past}&sig={signer._sig(name, past)}"
        other = f"{path}?exp={params['exp']}&sig={'ab' * 32}"
        for forged in (
            f"{path}?exp={params['exp']}&sig={flipped}",
            f"{path}?exp={int(params['exp']) + 3600}&sig={params['sig']}",
            f"{path}?exp={params['exp']}",
            path,
            expired,
            other,
        ):
            async with http.get(base + forged) as r:
                assert r.status == 403, forged
                assert data[:100] not in await r.read()
        for traversal in (
            "/media/kept/../clipjobs.db",
            "/media/kept/..%2fclipjobs.db",
            "/media/kept/%2e%2e/%2e%2e/clipjobs.db",
            f"/media/kept/{name}/..",
            f"/media/kept/.part-x?exp={params['exp']}&sig={params['sig']}",
            "/media/kept/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        ):
            answer = await running.request(get(traversal))
            assert status_of(answer) == 404, (traversal, answer[:200])


@pytest.mark.postgres
@pytest.mark.skipif(not os.environ.get("CLIPJOBS_TEST_PG_DSN"), reason="no CLIPJOBS_TEST_PG_DSN")
async def test_media_is_kept_on_postgresql_too(tmp_path: Path) -> None:
    """On PostgreSQL a finished job is claimed for its media copy and every file is kept."""
    dsn = os.environ["CLIPJOBS_TEST_PG_DSN"]
    schema = f"media_{secrets.token_hex(5)}"
    try:
        async with (
            cdn_and_fake() as (_cdn, fake),
            served(tmp_path, db_url=dsn, pg_schema=schema, **fake) as running,
            aiohttp.ClientSession() as http,
        ):
            job_id = await start(http, running)
            state = await until(running, job_id, lambda s: len(s.media) == 4)
            body = await get_job(http, running, job_id)
        assert state.done and state.work is None
        assert all(t["storedAudioUrl"] and t["storedImageUrl"] for t in body["tracks"])
    finally:
        from clipjobs_postgres import PostgresEventStore

        store = await PostgresEventStore.open(dsn, schema)
        try:
            await store.drop_schema()
        finally:
            await store.aclose()
