"""``clipjobs serve`` as a newcomer and an operator meet it: a real subprocess on loopback."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from _serve_harness import run_cli, serve_env, serving

from _procs import free_port, run_once
from clipjobs.app.webhook import WEBHOOK_SECRET_NAME, WebhookSigner
from clipjobs_suno.fake import running_fake_suno

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]


async def _follow(url: str, token: str, job_id: str) -> dict[str, Any]:
    """Long-poll the job (``Prefer: wait``) until it is done."""
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as session:
        etag = None
        while True:
            extra = {"Prefer": "wait=10", **({"If-None-Match": etag} if etag else {})}
            async with session.get(
                f"{url}/api/music-clips/jobs/{job_id}", headers={**headers, **extra}
            ) as response:
                if response.status == 304:
                    continue
                assert response.status == 200, await response.text()
                etag = response.headers.get("ETag")
                body: dict[str, Any] = await response.json()
            if body["done"]:
                return body


async def _start(url: str, token: str) -> str:
    async with aiohttp.ClientSession() as session:
        return await run_once(session, url, "channel_1", token)


async def test_demo_mode_runs_a_whole_job_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    async with serving(serve_env(tmp_path), tmp_path) as server:
        assert "DEMO MODE" in server.line_with("DEMO MODE")
        token = server.line_with("generated a token").rsplit(": ", 1)[1]
        assert f"open {server.url}/#token={token}" in await server.line_soon("open ")

        job_id = await asyncio.wait_for(_start(server.url, token), 30)
        body = await asyncio.wait_for(_follow(server.url, token, job_id), 60)
        assert body["stage"] == "STAGE_50_SUNO_SUCCESS"
        assert body["done"] is True and len(body["tracks"]) == 2
        async with aiohttp.ClientSession() as session, session.get(body["audioUrl"]) as audio:
            assert audio.status == 200
            assert audio.content_type == "audio/mpeg"
            assert len(await audio.read()) > 1000

        code = await server.stop()
    assert code == 0
    assert server.lines[-1] == "clipjobs: stopped"
    # The token was shown to the person who started the server, never logged.
    assert token not in server.stderr
    assert "STAGE_50_SUNO_SUCCESS" in server.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CLIPJOBS_PORT", "eighty"),
        ("CLIPJOBS_DB", "mysql://db/clips"),
        ("SUNO_MODEL", "V9"),
        ("CLIPJOBS_LOG_FORMAT", "xml"),
        ("PUBLIC_BASE_URL", "ftp://clips.example"),
        ("CLIPJOBS_JOB_TIMEOUT_S", "-5"),
        ("CLIPJOBS_CLIP_RENDER", "maybe"),
        ("CLIPJOBS_WORKER_HEARTBEAT_S", "0"),
        ("CLIPJOBS_WORKER_HEARTBEAT_S", "3600"),
        ("CLIPJOBS_RESEND_UNCERTAIN_AFTER_S", "-1"),
        ("CLIPJOBS_MAX_ACTIVE_PER_USER", "0"),
        ("CLIPJOBS_MAX_STARTS_PER_USER_PER_HOUR", "-2"),
    ],
)
async def test_bad_configuration_stops_start_up_with_one_line(
    tmp_path: Path, name: str, value: str
) -> None:
    code, out, err = await run_cli("serve", env=serve_env(tmp_path, **{name: value}))
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("clipjobs: error: ")
    assert name in lines[0]
    assert not (tmp_path / "clipjobs.db").exists()


async def test_a_taken_port_is_one_clear_line_and_no_database(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = await run_cli("serve", env=serve_env(tmp_path, CLIPJOBS_PORT=str(port)))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"clipjobs: error: cannot listen on 127.0.0.1:{port}: ")
    assert "Traceback" not in err
    assert not (tmp_path / "clipjobs.db").exists()


async def test_an_unreachable_database_is_one_line_and_exit_4(tmp_path: Path) -> None:
    env = serve_env(tmp_path, CLIPJOBS_DB=f"postgresql://nobody@127.0.0.1:{free_port()}/none")
    code, _, err = await run_cli("serve", env=env)
    assert code == 4
    assert "clipjobs: error: PostgreSQL is unavailable" in err
    assert "Traceback" not in err


async def test_clip_render_without_ffmpeg_refuses_to_start(tmp_path: Path) -> None:
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    env = serve_env(tmp_path, CLIPJOBS_CLIP_RENDER="on", PATH=str(empty_bin))
    code, _, err = await run_cli("serve", env=env)
    assert code == 2
    assert "ffmpeg" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "clipjobs.db").exists()


async def test_known_secrets_never_reach_the_logs_and_json_lines_carry_the_job(
    tmp_path: Path,
) -> None:
    suno_key = "sk-suno-known-secret-7f3a9c"
    token = "tok-bearer-known-secret-51d2"
    port = free_port()
    fake_config = {"text_after_s": 0.2, "first_after_s": 0.4, "complete_after_s": 0.6}
    async with running_fake_suno(api_key=suno_key, **fake_config) as (fake_url, fake):
        env = serve_env(
            tmp_path,
            CLIPJOBS_PORT=str(port),
            PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
            SUNO_API_KEY=suno_key,
            SUNO_BASE_URL=fake_url,
            CLIPJOBS_TOKENS=f"{token}=alice",
            CLIPJOBS_LOG_FORMAT="json",
            CLIPJOBS_LOG_LEVEL="DEBUG",
        )
        async with serving(env, tmp_path) as server:
            assert not any("DEMO MODE" in line for line in server.lines)
            job_id = await asyncio.wait_for(_start(server.url, token), 30)
            body = await asyncio.wait_for(_follow(server.url, token, job_id), 60)
            assert body["stage"] == "STAGE_50_SUNO_SUCCESS"
            assert body["sunoTaskId"] in {task["taskId"] for task in fake.tasks()}
            assert await server.stop() == 0

    with sqlite3.connect(tmp_path / "clipjobs.db") as db:
        events = "\n".join(row[0] for row in db.execute("SELECT payload FROM events"))
        (stored_secret,) = db.execute(
            "SELECT value FROM secrets WHERE name = ?", (WEBHOOK_SECRET_NAME,)
        ).fetchone()
    webhook_token = WebhookSigner(stored_secret).token(job_id)
    everything = server.stdout + server.stderr + events
    for secret in (suno_key, token, stored_secret, webhook_token):
        assert secret not in everything

    records = [json.loads(line) for line in server.stderr.splitlines() if line.strip()]
    assert {"ts", "level", "logger", "message"} <= set(records[0])
    about_job = [r for r in records if r.get("jobId") == job_id]
    assert about_job and all("stage" in r for r in about_job if r["logger"] == "clipjobs.job")
    assert any(r["message"].find("token=***") >= 0 for r in records)


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffmpeg/ffprobe not installed")
async def test_clip_render_turns_the_demo_song_into_a_served_vertical_clip(tmp_path: Path) -> None:
    env = serve_env(tmp_path, CLIPJOBS_CLIP_RENDER="on", CLIPJOBS_CLIP_MAX_S="3")
    async with serving(env, tmp_path) as server:
        token = server.line_with("generated a token").rsplit(": ", 1)[1]
        job_id = await asyncio.wait_for(_start(server.url, token), 30)
        body = await asyncio.wait_for(_follow(server.url, token, job_id), 120)
        assert body["stage"] == "STAGE_70_CLIP_READY", body
        assert body["audioUrl"] and body["clipUrl"] == f"/media/{job_id}.mp4"
        clip = tmp_path / "downloaded.mp4"
        async with (
            aiohttp.ClientSession() as session,
            session.get(server.url + body["clipUrl"]) as response,
        ):
            assert response.status == 200
            assert response.content_type == "video/mp4"
            clip.write_bytes(await response.read())
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(clip)],
        capture_output=True,
        check=True,
        text=True,
    )
    streams = {s["codec_type"]: s for s in json.loads(probe.stdout)["streams"]}
    assert (streams["video"]["codec_name"], streams["video"]["width"]) == ("h264", 1080)
    assert streams["video"]["height"] == 1920
    assert streams["audio"]["codec_name"] == "aac"
