"""Start-up: check_ffmpeg, the processor's settings, and the package's public names."""

from __future__ import annotations

import re
import stat
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from _ffmpeg_harness import FFMPEG, NEEDS_FFMPEG, ROOT, processor

import clipjobs_ffmpeg
from clipjobs import PostProcessor
from clipjobs.domain.errors import ConfigError, PostProcessError
from clipjobs_ffmpeg import DEFAULT_PUBLIC_PREFIX, FfmpegPostProcessor, check_ffmpeg, find_fonts

MISSING = "CLIPJOBS_CLIP_RENDER=on needs ffmpeg on PATH (apt-get install ffmpeg)"


def test_public_names() -> None:
    """``__all__`` lists exactly the package's public names."""
    public = {name for name in vars(clipjobs_ffmpeg) if not name.startswith("_")}
    public -= {"annotations"}
    assert set(clipjobs_ffmpeg.__all__) == public
    assert DEFAULT_PUBLIC_PREFIX == "/media"


@pytest.mark.skipif(FFMPEG is None, reason=NEEDS_FFMPEG)
def test_check_ffmpeg_returns_the_version_line() -> None:
    """With ffmpeg on PATH, check_ffmpeg answers its version line."""
    assert check_ffmpeg().startswith("ffmpeg version ")


def test_check_ffmpeg_missing_is_one_clear_line(tmp_path: Path) -> None:
    """No such ffmpeg: ConfigError with the operator's one line."""
    with pytest.raises(ConfigError) as info:
        check_ffmpeg(str(tmp_path / "no-ffmpeg-here"))
    assert str(info.value) == MISSING


def test_check_ffmpeg_that_does_not_run(tmp_path: Path) -> None:
    """An 'ffmpeg' that exits non-zero is refused with a ConfigError, not a CalledProcessError."""
    fake = _script(tmp_path / "ffmpeg", "exit 3")
    with pytest.raises(ConfigError) as info:
        check_ffmpeg(str(fake))
    assert str(info.value).startswith(MISSING)


def test_check_ffmpeg_without_libx264(tmp_path: Path) -> None:
    """An ffmpeg built without libx264 is refused at start-up rather than at every render."""
    fake = _script(
        tmp_path / "ffmpeg",
        'case "$2" in -version) echo "ffmpeg version 9-nox264";; '
        '*) echo " A..... aac  AAC (Advanced Audio Coding)";; esac',
    )
    with pytest.raises(ConfigError) as info:
        check_ffmpeg(str(fake))
    assert "needs an ffmpeg with libx264 (" in str(info.value)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "options",
    [
        {"allowed_hosts": []},
        {"allowed_hosts": ["  ", ""]},
        {"clip_max_s": 0},
        {"max_bytes": 0},
        {"fps": -1},
        {"preset": "placebo; rm -rf /"},
        {"background": "red:enable=0,drawtext"},
        {"render_timeout_s": 0},
        {"max_parallel": 0},
        {"style": "fancy"},
        {"lyrics_timeout_s": 0},
    ],
)
async def test_bad_settings_refused_at_construction(
    tmp_path: Path, options: dict[str, object]
) -> None:
    """Empty host lists, non-positive limits, odd presets and filter-ish colors: ConfigError."""
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ConfigError):
            processor(session, tmp_path, **options)


@pytest.mark.asyncio
async def test_hosts_may_be_given_as_urls(tmp_path: Path) -> None:
    """A base URL in allowed_hosts allows its host (the Suno base URL can be passed as is)."""
    async with aiohttp.ClientSession() as session:
        proc = processor(session, tmp_path, allowed_hosts=["https://API.SunoAPI.org/", "cdn.x"])
    proc.policy.check("https://api.sunoapi.org/file.mp3")
    proc.policy.check("http://CDN.X./a.mp3")
    assert "api.sunoapi.org" in repr(proc)
    with pytest.raises(PostProcessError):
        proc.policy.check("https://sunoapi.org/file.mp3")


@pytest.mark.asyncio
async def test_is_a_post_processor_and_refuses_unsafe_job_ids(tmp_path: Path) -> None:
    """The processor fits the core's port; a job id that could climb out of media_dir is refused."""
    async with aiohttp.ClientSession() as session:
        proc: PostProcessor = processor(session, tmp_path)
        assert isinstance(proc, FfmpegPostProcessor)
        assert proc.clip_url("job_1_abc") == "/media/job_1_abc.mp4"
        for bad in ("../etc/passwd", "job/1", ".hidden", ""):
            with pytest.raises(PostProcessError):
                proc.clip_path(bad)


@pytest.mark.asyncio
async def test_full_style_without_the_fonts_is_one_clear_line(tmp_path: Path) -> None:
    """``full`` needs DejaVu Sans: a directory without it is a ConfigError naming the package."""
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ConfigError) as info:
            processor(session, tmp_path, style="full", fonts_dir=tmp_path)
        assert "apt-get install fonts-dejavu-core" in str(info.value)
        assert "\n" not in str(info.value)
        # ``simple`` draws no text: it starts without them.
        assert processor(session, tmp_path, style="simple", fonts_dir=tmp_path / "none").style == (
            "simple"
        )


def test_the_font_is_installed_by_the_projects_own_steps() -> None:
    """.ci/run installs fonts-dejavu-core, and find_fonts finds Debian's DejaVu Sans there."""
    assert "fonts-dejavu-core" in (ROOT / ".ci" / "run").read_text()
    try:
        found = find_fonts()
    except ConfigError:
        pytest.skip("fonts-dejavu-core is not installed here (.ci/run installs it)")
    assert (found / "DejaVuSans-Bold.ttf").is_file() and (found / "DejaVuSans.ttf").is_file()


def _script(path: Path, body: str) -> Path:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


@pytest.mark.skipif(FFMPEG is None, reason=NEEDS_FFMPEG)
def test_readme_example_runs(tmp_path: Path) -> None:
    """The adapter README's python block runs in a fresh interpreter."""
    readme = (ROOT / "adapters" / "clipjobs_ffmpeg" / "README.md").read_text()
    (block,) = re.findall(r"```python\n(.*?)```", readme, re.S)
    result = subprocess.run(
        [sys.executable, "-c", block],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("ffmpeg version ")
