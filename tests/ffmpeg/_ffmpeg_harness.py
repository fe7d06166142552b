"""A real media server on 127.0.0.1, the fake Suno over HTTP, jobs folded from real events,
ffprobe, and frames read back as pixels.

The media server serves the fake Suno's committed MP3/JPEG files, read as
files, with every way a CDN can go wrong. The captions need Suno itself: for
them the fake Suno runs as a real HTTP server and the real client talks to it
(the adapters do not import each other; their tests may).
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import random
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from clipjobs import (
    ChannelDefaults,
    ClipProcessingStarted,
    ClipStep,
    EventStore,
    GenerationParams,
    InMemoryEventStore,
    JobAccepted,
    JobPolicy,
    JobRequest,
    JobService,
    JobState,
    Observation,
    ProviderStatus,
    RecordObservation,
    ServiceConfig,
    Source,
    Stage,
    SunoClient,
    SunoRequestSent,
    SunoSucceeded,
    SunoTaskCreated,
    SystemClock,
    Track,
    WebhookSigner,
    Work,
    fold,
)
from clipjobs.testing import ScriptedSuno
from clipjobs_ffmpeg import FfmpegPostProcessor
from clipjobs_ffmpeg._ffmpeg import COVER_BOX
from clipjobs_suno import SunoApiClient
from clipjobs_suno.fake import FakeSuno, running_fake_suno

ROOT = Path(__file__).resolve().parents[2]
MEDIA = ROOT / "adapters" / "clipjobs_suno" / "media"
TRACK_1 = (MEDIA / "track-1.mp3").read_bytes()  # 4.08 s, decodes to ~4.0 s
TRACK_2 = (MEDIA / "track-2.mp3").read_bytes()  # 3.06 s, decodes to ~3.0 s
COVER_1 = (MEDIA / "cover-1.jpeg").read_bytes()
#: MP3 frames concatenate: twenty copies make an 80 s song whose render takes seconds.
LONG = TRACK_1 * 20
FFMPEG = shutil.which("ffmpeg")
FFPROBE = shutil.which("ffprobe")
NEEDS_FFMPEG = "ffmpeg/ffprobe not on PATH (apt-get install ffmpeg; .ci/run installs it)"
#: Skips a test (or, as ``pytestmark``, a module) where ffmpeg or ffprobe is missing.
WITH_FFMPEG = pytest.mark.skipif(FFMPEG is None or FFPROBE is None, reason=NEEDS_FFMPEG)
#: ``pytestmark`` of a module of async tests that run ffmpeg.
ASYNC_WITH_FFMPEG = [pytest.mark.asyncio, WITH_FFMPEG]
#: The processor's default background, as RGB.
BACKGROUND = (0x1D, 0x1B, 0x26)
#: The channel of the jobs made here.
CHANNEL = "channel_ff"
FPS = 2.0

_T0 = datetime(2026, 1, 1, tzinfo=UTC)
#: Ports of the media servers running now: a bare host allows only 80 and 443.
SERVING: set[int] = set()


class MediaServer:
    """The provider's CDN as a real aiohttp server: good files, bad files, redirects, errors."""

    def __init__(self) -> None:
        self.hits: collections.Counter[str] = collections.Counter()
        self.port = 0
        self._never = asyncio.Event()
        app = web.Application(middlewares=[self._count])
        app.router.add_get("/media/{name}", self._file)
        app.router.add_get("/long.mp3", self._bytes(LONG, "audio/mpeg"))
        app.router.add_get(
            "/corrupt.mp3", self._bytes(random.Random(7).randbytes(20000), "audio/mpeg")
        )
        app.router.add_get("/octet.mp3", self._bytes(TRACK_2, "application/octet-stream"))
        app.router.add_get("/page.mp3", self._bytes(b"<html>nope</html>", "text/html"))
        app.router.add_get("/page.jpeg", self._bytes(b"<html>nope</html>", "text/html"))
        app.router.add_get(
            "/api.mp3", self._bytes(b'{"internal": "service details"}', "application/json")
        )
        app.router.add_get("/garbage.jpeg", self._bytes(b"\xff\xd8 not a jpeg" * 50, "image/jpeg"))
        app.router.add_get("/empty.mp3", self._bytes(b"", "audio/mpeg"))
        app.router.add_get("/missing.mp3", self._status(404))
        app.router.add_get("/broken.mp3", self._status(500))
        app.router.add_get("/flaky.mp3", self._flaky)
        app.router.add_get("/chunked.mp3", self._chunked)
        app.router.add_get("/away.mp3", self._redirect_away)
        app.router.add_get("/home.mp3", self._redirect("/media/track-2.mp3"))
        app.router.add_get("/loop.mp3", self._redirect("/loop.mp3"))
        app.router.add_get("/slow.mp3", self._slow)
        app.router.add_get("/playlist.mp3", self._playlist)
        self._runner = web.AppRunner(app)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        SERVING.add(self.port)

    async def close(self) -> None:
        SERVING.discard(self.port)
        self._never.set()
        await self._runner.cleanup()

    @web.middleware
    async def _count(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.hits[f"{request.host.split(':')[0]}{request.path}"] += 1
        return await handler(request)

    async def _file(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = MEDIA / name
        if "/" in name or not path.is_file():
            raise web.HTTPNotFound()
        kind = "audio/mpeg" if name.endswith(".mp3") else "image/jpeg"
        return web.Response(body=path.read_bytes(), content_type=kind)

    @staticmethod
    def _bytes(body: bytes, content_type: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            return web.Response(body=body, headers={"Content-Type": content_type})

        return handler

    @staticmethod
    def _status(status: int) -> Any:
        async def handler(request: web.Request) -> web.Response:
            return web.Response(status=status, text="no")

        return handler

    @staticmethod
    def _redirect(location: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            raise web.HTTPFound(location)

        return handler

    async def _redirect_away(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(self.url("/media/track-1.mp3", host="localhost"))

    async def _flaky(self, request: web.Request) -> web.Response:
        if self.hits["127.0.0.1/flaky.mp3"] == 1:
            return web.Response(status=503, text="busy")
        return web.Response(body=TRACK_2, content_type="audio/mpeg")

    async def _chunked(self, request: web.Request) -> web.StreamResponse:
        # No Content-Length: only counting the bytes can enforce the cap.
        response = web.StreamResponse(headers={"Content-Type": "audio/mpeg"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(TRACK_1), 1024):
            await response.write(TRACK_1[start : start + 1024])
        await response.write_eof()
        return response

    async def _playlist(self, request: web.Request) -> web.Response:
        # An HLS playlist served as MP3: it names a local file and a URL on this server.
        body = (
            "#EXTM3U\n#EXT-X-TARGETDURATION:5\n"
            f"#EXTINF:4,\nfile://{MEDIA / 'track-1.mp3'}\n"
            f"#EXTINF:4,\n{self.url('/media/track-2.mp3')}\n#EXT-X-ENDLIST\n"
        )
        return web.Response(text=body, content_type="audio/mpeg")

    async def _slow(self, request: web.Request) -> web.Response:
        await self._never.wait()
        return web.Response(status=503)


@asynccontextmanager
async def media_server() -> AsyncIterator[MediaServer]:
    server = MediaServer()
    await server.start()
    try:
        yield server
    finally:
        await server.close()


def processor(
    session: aiohttp.ClientSession, media_dir: Path, **options: Any
) -> FfmpegPostProcessor:
    """A processor tuned for fast tests: 2 s clips at 2 fps, ultrafast, quick retries.

    It may fetch from the media servers running now (127.0.0.1 on their ports).
    """
    settings: dict[str, Any] = {
        "allowed_hosts": [f"127.0.0.1:{port}" for port in sorted(SERVING)] or ["127.0.0.1"],
        "clip_max_s": 2.0,
        "fps": FPS,
        "preset": "ultrafast",
        "retry_backoff_s": 0.01,
        "download_timeout_s": 10.0,
        "render_timeout_s": 60.0,
    }
    settings.update(options)
    return FfmpegPostProcessor(session, media_dir, **settings)


def clip_service(
    proc: FfmpegPostProcessor,
    store: EventStore | None = None,
    suno: SunoClient | None = None,
    *,
    defaults: ChannelDefaults | None = None,
    **config: Any,
) -> JobService:
    """A JobService whose jobs render with ``proc`` (clip_render on), on the system clock.

    The store and Suno are new and in memory, and the channels' parameters
    ``ChannelDefaults()``, unless given; ``config`` overrides the ServiceConfig's settings.
    """
    settings: dict[str, Any] = {
        "callback_base_url": "https://clips.example",
        "policy": JobPolicy(clip_render=True),
        **config,
    }
    return JobService(
        store if store is not None else InMemoryEventStore(),
        suno if suno is not None else ScriptedSuno(),
        defaults if defaults is not None else ChannelDefaults(),
        WebhookSigner("secret-for-tests"),
        clock=SystemClock(),
        config=ServiceConfig(**settings),
        post_processor=proc,
    )


async def succeeded(service: JobService, *tracks: Track) -> str:
    """A new job of ``service``, sent, and succeeded with ``tracks``: its render is due."""
    job = (await service.start_job(JobRequest(CHANNEL, "u1"))).job
    sent = await service.send(job.job_id)
    assert sent.task_id is not None
    observation = Observation(sent.task_id, ProviderStatus.SUCCESS, tracks)
    state, _ = await service.execute(
        job.job_id, lambda at: RecordObservation(observation, Source.CALLBACK, at)
    )
    assert state.stage is Stage.SUNO_SUCCESS
    assert state.work is Work.RENDER and not state.done
    return job.job_id


def rendering_job(
    job_id: str, params: GenerationParams, task_id: str, tracks: tuple[Track, ...]
) -> JobState:
    """A job of CHANNEL in STAGE_60 (its clip being made), folded from the events a real run
    records: accepted, sent, the Suno task, its success with ``tracks``, processing started."""
    return fold(
        [
            JobAccepted(
                job_id,
                CHANNEL,
                "u1",
                "req_1767225600000_abc123",
                params,
                _T0,
                policy=JobPolicy(clip_render=True),
            ),
            SunoRequestSent(1, _T0),
            SunoTaskCreated(task_id, Source.GENERATE, _T0),
            SunoSucceeded(Source.POLL, tracks, _T0),
            ClipProcessingStarted(_T0),
        ]
    )


_counter = 0


def _job_id(kind: str) -> str:
    """A job id no other job of this test run has."""
    global _counter
    _counter += 1
    return f"job_1767225600000_{kind}{_counter:04d}"


def clip_job(audio_url: str = "", image_url: str = "", *, tracks: bool = True) -> JobState:
    """A job in STAGE_60 whose one track has these URLs (or that has no track)."""
    songs = (Track("song-1", audio_url=audio_url, image_url=image_url, duration=4.08),)
    return rendering_job(
        _job_id("ff"), GenerationParams(prompt="a song"), "task-ff", songs if tracks else ()
    )


class Steps:
    """A StepReporter that remembers what it was told."""

    def __init__(self) -> None:
        self.seen: list[ClipStep] = []

    async def __call__(self, step: ClipStep) -> None:
        self.seen.append(step)


def listing(directory: Path) -> list[str]:
    """Everything in ``directory``, hidden entries included, recursively."""
    if not directory.exists():
        return []
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


def probe(path: Path) -> dict[str, Any]:
    """ffprobe's streams and format for ``path``, as a dict."""
    assert FFPROBE is not None
    out = subprocess.run(
        [
            FFPROBE,
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type,codec_name,width,height,pix_fmt,duration:format=duration",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    data: dict[str, Any] = json.loads(out)
    return data


def streams(path: Path) -> tuple[dict[str, Any], dict[str, Any], float]:
    """The one video and the one audio stream of ``path`` (ffprobe's), and its duration."""
    info = probe(path)
    (video,) = [s for s in info["streams"] if s["codec_type"] == "video"]
    (audio,) = [s for s in info["streams"] if s["codec_type"] == "audio"]
    return video, audio, float(info["format"]["duration"])


def first_frame_rgb(path: Path) -> tuple[int, int, int]:
    """The average color of where the cover goes in the clip's first frame (scaled to one pixel).

    That square is the cover in both styles when there is one, and the solid
    background when there is not (``full`` draws its title and waveform elsewhere).
    """
    assert FFMPEG is not None
    x, y, w, h = COVER_BOX
    crop = f"crop={w}:{h}:{x}:{y},scale=1:1"
    argv = [FFMPEG, "-v", "error", "-i", str(path), "-frames:v", "1", "-vf", crop]
    raw = subprocess.run(
        [*argv, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    return raw[0], raw[1], raw[2]


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


async def encoding_pid(proc: FfmpegPostProcessor, job_id: str, task: asyncio.Task[Any]) -> int:
    """Wait until the job's ffmpeg is encoding the MP4 (not composing the frame); its pid."""
    for _ in range(3000):
        if task.done():
            raise AssertionError(f"the render ended before encoding: {task.result()!r}")
        pid = proc.ffmpeg_pid(job_id)
        if pid is not None and b"clip.mp4" in cmdline(pid):
            return pid
        await asyncio.sleep(0.01)
    raise AssertionError("ffmpeg never started encoding")


def gone(pid: int) -> bool:
    """Whether no process (not even an unreaped zombie) has this pid."""
    return not Path(f"/proc/{pid}").exists()


def ffmpeg_children() -> list[int]:
    """Pids of ffmpeg processes (zombies included) whose parent is this test process."""
    me = os.getpid()
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm = text[text.index("(") + 1 : text.rindex(")")]
        ppid = int(text[text.rindex(")") + 2 :].split()[1])
        if ppid == me and comm.startswith("ffmpeg"):
            found.append(int(stat.parent.name))
    return found


# --- the fake Suno, for lyrics -------------------------------------------------

#: What the fake sings in non-custom mode starts with these words (see its README).
SONG = GenerationParams(prompt="a song about a quiet town", title="Тихий город")


@asynccontextmanager
async def fake_suno(**config: Any) -> AsyncIterator[tuple[SunoApiClient, FakeSuno]]:
    """The fake Suno on 127.0.0.1 answering in milliseconds, and the real client for it."""
    settings: dict[str, Any] = {
        "text_after_s": 0.01,
        "first_after_s": 0.02,
        "complete_after_s": 0.03,
        "rate_limit": 10_000,
        "callback_retries": 0,
        **config,
    }
    async with (
        running_fake_suno(**settings) as (url, fake),
        aiohttp.ClientSession() as session,
    ):
        # Its audio and covers are media the processor may fetch, like a MediaServer's.
        port = int(url.rsplit(":", 1)[1])
        SERVING.add(port)
        try:
            yield SunoApiClient(session, "test-key", base_url=url), fake
        finally:
            SERVING.discard(port)


async def finished_song(client: SunoApiClient, params: GenerationParams = SONG) -> Observation:
    """Generate on the fake and poll until both tracks are ready."""
    task_id = await client.generate(params, "http://127.0.0.1:9/callback")
    for _ in range(500):
        seen = await client.record_info(task_id)
        if seen.status is ProviderStatus.SUCCESS:
            return seen
        await asyncio.sleep(0.01)
    raise AssertionError("the fake Suno never finished the song")


def song_job(
    seen: Observation, params: GenerationParams = SONG, *, title: str | None = None
) -> JobState:
    """A job in STAGE_60 whose tracks are the fake's (audio, cover and lyrics on the fake)."""
    tracks = seen.tracks
    if title is not None:
        tracks = tuple(
            Track(t.id, t.audio_url, t.stream_audio_url, t.image_url, title, t.duration)
            for t in tracks
        )
    return rendering_job(_job_id("ly"), params, seen.task_id, tracks)


# --- pixels ---------------------------------------------------------------------

#: Frames are read back at a quarter of their size: 270×480, one byte per channel.
SCALE = 4
SMALL_W, SMALL_H = 1080 // SCALE, 1920 // SCALE


def frame(path: Path, at_s: float, pix_fmt: str = "gray") -> bytes:
    """The picture shown at ``at_s`` in the clip (or a PNG, at 0), scaled to 270×480."""
    assert FFMPEG is not None
    seek = ["-ss", f"{at_s:.3f}"] if path.suffix == ".mp4" else []
    raw = subprocess.run(
        [
            *(FFMPEG, "-v", "error", *seek, "-i", str(path), "-frames:v", "1"),
            *("-vf", f"scale={SMALL_W}:{SMALL_H}:flags=area", "-f", "rawvideo"),
            *("-pix_fmt", pix_fmt, "-"),
        ],
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    channels = 3 if pix_fmt == "rgb24" else 1
    assert len(raw) == SMALL_W * SMALL_H * channels, len(raw)
    return raw


def rows(full_top: int, full_bottom: int) -> range:
    """Rows of a small frame covering rows ``[full_top, full_bottom)`` of the full one."""
    return range(full_top // SCALE, -(-full_bottom // SCALE))


def mean_diff(a: bytes, b: bytes, band: range, cols: range | None = None) -> float:
    """Mean absolute difference of two gray frames over some rows (and columns)."""
    cols = cols or range(SMALL_W)
    total = 0
    for y in band:
        base = y * SMALL_W
        total += sum(abs(a[base + x] - b[base + x]) for x in cols)
    return total / (len(band) * len(cols))


def edges(gray: bytes, band: range) -> int:
    """The sharpest step between neighbouring pixels in some rows: text has them, blur has not."""
    sharpest = 0
    for y in band:
        row = gray[y * SMALL_W : (y + 1) * SMALL_W]
        sharpest = max(sharpest, max(abs(row[x + 1] - row[x]) for x in range(SMALL_W - 1)))
    return sharpest


def gold(rgb: bytes, band: range) -> int:
    """How many pixels in some rows are the gold of sung words (R high, G high, B low)."""
    count = 0
    for y in band:
        for x in range(SMALL_W):
            r, g, b = rgb[3 * (y * SMALL_W + x) : 3 * (y * SMALL_W + x) + 3]
            if r > 200 and g > 160 and b < 90:
                count += 1
    return count


# --- ASS, read back -------------------------------------------------------------

_OVERRIDE = re.compile(r"(?<!\\)\{[^}]*(?<!\\)\}")
_ASS_TIME = re.compile(r"^(\d+):(\d\d):(\d\d)\.(\d\d)$")


def _seconds(stamp: str) -> float:
    match = _ASS_TIME.match(stamp)
    assert match, stamp
    h, m, s, cs = map(int, match.groups())
    return h * 3600 + m * 60 + s + cs / 100


def dialogues(ass: str, style: str = "Current") -> list[tuple[float, float, str]]:
    """``(start, end, text as shown)`` of each Dialogue line of ``style``, in file order.

    The text is what libass draws: override blocks removed, ``\\{``, ``\\}`` and
    the backslash-word-joiner escape turned back into the characters.
    """
    found = []
    for line in ass.splitlines():
        if not line.startswith("Dialogue:"):
            continue
        fields = line[len("Dialogue:") :].split(",", 9)
        if fields[3] != style:
            continue
        text = _OVERRIDE.sub("", fields[9])
        text = text.replace("\\{", "{").replace("\\}", "}").replace("\\\u2060", "\\")
        found.append((_seconds(fields[1]), _seconds(fields[2]), text))
    return found
