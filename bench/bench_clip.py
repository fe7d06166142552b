"""Clip rendering: seconds of render per second of clip, ``full`` vs ``simple``, in the same run.

Both styles render the same 60 s song (the fake Suno's MP3 looped to 61 s)
with the same cover, into a 60 s 1080×1920 clip at the processor's defaults
(25 fps, x264 ``veryfast``), through ``FfmpegPostProcessor.process`` as a
job would: download from a local HTTP server, the lyrics call to the fake
Suno over HTTP (``full`` gets 150 aligned words over the minute, like a
song), both ffmpeg runs, the atomic rename. ``simple`` is the baseline: the
renderer as it was before ``full`` existed.

Each repeat renders both styles back to back, in alternating order, so a
noisy neighbour slows both alike. Reported per style (medians): wall seconds
of render per second of clip, and CPU seconds (ffmpeg's user + system time,
from ``RUSAGE_CHILDREN``) per second of clip — the CPU figure does not
depend on what else runs on the machine, the wall one does. The ratio is the
median of the per-repeat ratios.

Goal (issue 22): ``full`` renders a 60 s clip in under 60 s of wall time on
this 2-core machine (render/clip < 1.0).
Run: python bench/bench_clip.py [--repeats N] [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).parent))
# The ffmpeg tests' harness: the fake Suno as they run it, and their STAGE_60 job.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "ffmpeg"))
from _common import machine, table
from _ffmpeg_harness import CHANNEL, MEDIA, fake_suno, rendering_job

from clipjobs import ClipStep, GenerationParams, JobState, Track
from clipjobs_ffmpeg import FfmpegPostProcessor

GOAL = 1.0  # seconds of render per second of clip, for full
VERSE = [
    "Тихий",
    "город",
    "ночь",
    "без",
    "края",
    "мы",
    "поём",
    "и",
    "мир",
    "светлее",
    "эта",
    "песня",
    "обо",
    "мне",
]


def lyrics(seconds: float) -> list[dict[str, Any]]:
    """A song's worth of aligned words: 2.5 words a second, a section tag every 8 lines."""
    words, at, n = [], 0.4, 0
    while at < seconds - 0.5:
        text = VERSE[n % len(VERSE)]
        if n % 48 == 0:
            text = ("[Verse]\n" if n % 96 == 0 else "[Chorus]\n") + text
        if n % 6 == 5:
            text += "\n"
        words.append({"word": text, "success": True, "startS": at, "endS": at + 0.3, "palign": 0})
        at += 0.4 + (0.4 if n % 6 == 5 else 0.0)
        n += 1
    return words


async def serve_media(song: bytes) -> tuple[web.AppRunner, str]:
    app = web.Application()

    async def audio(_: web.Request) -> web.Response:
        return web.Response(body=song, content_type="audio/mpeg")

    async def cover(_: web.Request) -> web.Response:
        return web.Response(body=(MEDIA / "cover-1.jpeg").read_bytes(), content_type="image/jpeg")

    app.router.add_get("/song.mp3", audio)
    app.router.add_get("/cover.jpeg", cover)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


def job(n: int, task_id: str, track_id: str, base: str, seconds: float) -> JobState:
    track = Track(
        track_id,
        audio_url=f"{base}/song.mp3",
        image_url=f"{base}/cover.jpeg",
        title="Тихий город",
        duration=seconds,
    )
    params = GenerationParams(prompt="a song", title="Тихий город")
    return rendering_job(f"job_1767225600000_bench{n:04d}", params, task_id, (track,))


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def clip_seconds(path: Path) -> float:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(out)


async def reporter(_: ClipStep) -> None:
    return None


async def measure(repeats: int, clip_max_s: float) -> dict[str, Any]:
    song = (MEDIA / "track-1.mp3").read_bytes() * (int(clip_max_s // 4) + 1)
    seconds = 4.0 * (int(clip_max_s // 4) + 1)
    runner, base = await serve_media(song)
    samples: dict[str, list[dict[str, float]]] = {"simple": [], "full": []}
    try:
        async with (
            fake_suno(lyrics=lyrics(seconds)) as (suno, _),
            aiohttp.ClientSession() as session,
        ):
            task_id = await suno.generate(GenerationParams(prompt="a song"), f"{base}/cb")
            await asyncio.sleep(0.1)
            track_id = (await suno.record_info(task_id)).tracks[0].id
            with tempfile.TemporaryDirectory() as tmp:
                processors = {
                    style: FfmpegPostProcessor(
                        session,
                        Path(tmp) / style,
                        allowed_hosts=[base],  # host:port: a bare host allows 80/443 only
                        clip_max_s=clip_max_s,
                        style=style,
                        suno=suno,
                        channel_names={CHANNEL: "Music Clips"},
                    )
                    for style in ("simple", "full")
                }
                n = 0
                for repeat in range(repeats):
                    order = ("simple", "full") if repeat % 2 == 0 else ("full", "simple")
                    for style in order:
                        n += 1
                        the_job = job(n, task_id, track_id, base, seconds)
                        cpu, wall = children_cpu(), time.monotonic()
                        made = await processors[style].process(the_job, reporter)
                        wall = time.monotonic() - wall
                        cpu = children_cpu() - cpu
                        length = clip_seconds(Path(tmp) / style / f"{the_job.job_id}.mp4")
                        if style == "full":
                            assert made.captions_url is not None, made.note
                        samples[style].append({"wall": wall, "cpu": cpu, "clip": length})
    finally:
        await runner.cleanup()
    return summarise(samples)


def summarise(samples: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for style, runs in samples.items():
        figures[style] = {
            "clip_s": statistics.median(r["clip"] for r in runs),
            "render_wall_s": statistics.median(r["wall"] for r in runs),
            "wall_per_clip_s": statistics.median(r["wall"] / r["clip"] for r in runs),
            "cpu_per_clip_s": statistics.median(r["cpu"] / r["clip"] for r in runs),
            "runs": runs,
        }
    pairs = list(zip(samples["full"], samples["simple"], strict=True))
    figures["full_vs_simple_wall"] = statistics.median(f["wall"] / s["wall"] for f, s in pairs)
    figures["full_vs_simple_cpu"] = statistics.median(f["cpu"] / s["cpu"] for f, s in pairs)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one repeat of a 4 s clip")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        print("skipped: ffmpeg/ffprobe not on PATH (apt-get install ffmpeg fonts-dejavu-core)")
        return 0
    repeats, clip_max_s = (1, 4.0) if args.quick else (args.repeats, 60.0)
    load = os.getloadavg()
    figures = asyncio.run(measure(repeats, clip_max_s))
    figures |= {"repeats": repeats, "clip_max_s": clip_max_s, "load_avg_before": load}
    rows = [("style", "clip s", "render s", "render s / clip s", "ffmpeg CPU s / clip s")]
    for style in ("simple", "full"):
        f = figures[style]
        rows.append(
            (
                style,
                f"{f['clip_s']:.1f}",
                f"{f['render_wall_s']:.1f}",
                f"{f['wall_per_clip_s']:.2f}",
                f"{f['cpu_per_clip_s']:.2f}",
            )
        )
    print(f"{machine()}; load average before: {', '.join(f'{x:.2f}' for x in load)}")
    print(f"{repeats} repeat(s), each rendering both styles back to back, alternating the order")
    print(table(rows))
    full = figures["full"]["wall_per_clip_s"]
    verdict = "met" if full < GOAL else "MISSED"
    print(
        f"full vs simple: {figures['full_vs_simple_wall']:.2f}x the wall time,"
        f" {figures['full_vs_simple_cpu']:.2f}x the CPU time"
    )
    print(
        f"goal: full renders a {clip_max_s:g} s clip in under {clip_max_s:g} s"
        f" (render/clip < {GOAL:g}): {verdict} ({full:.2f})"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
