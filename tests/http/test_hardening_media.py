"""Issue #24 item 7: ``/media`` serves finished media files only, and logs the status it sent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _serving import get, served, status_of

pytestmark = pytest.mark.asyncio

CLIP = b"\x00\x00\x00\x18ftypmp42" + b"m" * 1000


def _lay_out(media: Path) -> None:
    media.mkdir(parents=True, exist_ok=True)
    (media / "job_1767225600000_abcdef.mp4").write_bytes(CLIP)
    work = media / ".work-job_1767225600000_abcdef-x1y2z3"
    work.mkdir()
    (work / "clip.mp4").write_bytes(b"half a clip")
    (work / "audio.mp3").write_bytes(b"a download")
    (media / ".env").write_text("SUNO_API_KEY=secret\n")
    (media / ".hidden.mp4").write_bytes(b"hidden")
    (media / "notes.txt").write_text("not media")
    os.symlink(media.parent / "clipjobs.db", media / "db.mp4")


async def test_only_finished_media_files_are_served_and_statuses_are_logged_true(
    tmp_path: Path,
) -> None:
    """Dotfiles, ``.work-*`` scratch files, other suffixes, symlinks out and ``..`` are 404s.

    A finished clip is 200 (206 for a range), and every answer is logged and
    counted with the status the client got: a missing file was logged as 200.
    """
    async with served(tmp_path, clip_render=True) as running:
        _lay_out(tmp_path / "media")
        refused = [
            "/media/.work-job_1767225600000_abcdef-x1y2z3/clip.mp4",
            "/media/.work-job_1767225600000_abcdef-x1y2z3/audio.mp3",
            "/media/.env",
            "/media/.hidden.mp4",
            "/media/notes.txt",
            "/media/db.mp4",
            "/media/%2e%2e/clipjobs.db",
            "/media/..%2fclipjobs.db",
            "/media/missing.mp4",
        ]
        for path in refused:
            mark = running.mark()
            answer = await running.request(get(path))
            assert status_of(answer) == 404, (path, answer[:200])
            assert b"half a clip" not in answer and b"secret" not in answer
            [line] = running.lines_since(mark)
            assert line.split(" ")[5] == "404", line
        mark = running.mark()
        answer = await running.request(get("/media/job_1767225600000_abcdef.mp4"))
        assert status_of(answer) == 200 and answer.endswith(CLIP)
        assert b"Content-Type: video/mp4" in answer
        answer = await running.request(
            get("/media/job_1767225600000_abcdef.mp4", b"Range: bytes=0-9")
        )
        assert status_of(answer) == 206 and answer.endswith(CLIP[:10])
        statuses = [line.split(" ")[5] for line in running.lines_since(mark)]
        assert statuses == ["200", "206"]
        metrics = (await running.request(get("/metrics"))).decode()
    assert f'route="/media/{{path}}",status="404"}} {len(refused)}' in metrics
    assert 'route="/media/{path}",status="200"} 1' in metrics
