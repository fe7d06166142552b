"""Running ffmpeg: start-up checks, the commands of each style, a child that never outlives us.

A clip is made in two runs. The first composes what does not move as JPEGs:
for ``simple``, the one frame (the cover letterboxed over a blurred copy of
itself, or a solid color); for ``full``, the background (the blurred cover
with the channel name and the title drawn by libass) and the cover as a
square. The second run loops those over the audio and encodes; for ``full``
it zooms the cover slowly, draws the audio's waveform (``showwaves``) and
burns in the karaoke captions (``ass``). Splitting the runs tells a bad
cover (fall back to the solid color) from bad audio (the job fails), and the
encoder decodes and blurs the pictures once, not once a frame: every
conversion happens before the ``loop``, so each frame costs only the zoom,
two overlays, the captions and x264.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import subprocess
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

from clipjobs.domain.errors import ConfigError, PostProcessError

from ._codes import ClipErrorCode

__all__ = [
    "BOLD_FONT",
    "COVER_BOX",
    "FONT_DIRS",
    "HEIGHT",
    "MISSING",
    "WAVE_BOX",
    "WIDTH",
    "FfmpegRun",
    "check_ffmpeg",
    "compose_args",
    "compose_full_args",
    "encode_args",
    "encode_full_args",
    "find_fonts",
]

WIDTH, HEIGHT = 1080, 1920
MISSING = "CLIPJOBS_CLIP_RENDER=on needs ffmpeg on PATH (apt-get install ffmpeg)"
#: Where ``full`` draws the cover and the waveform: (x, y, width, height).
COVER_BOX = (160, 440, 760, 760)
WAVE_BOX = (60, 1215, 960, 120)
#: How much the cover grows over the clip (8%: gentle over a minute, visible in two seconds).
ZOOM = 0.08
#: Where Debian's fonts-dejavu-core puts DejaVu Sans (it covers Latin, Cyrillic,
#: Greek, Hebrew and Arabic); the first one holding both weights is used.
FONT_DIRS = (
    Path("/usr/share/fonts/truetype/dejavu"),
    Path("/usr/share/fonts/dejavu"),
    Path("/usr/local/share/fonts/dejavu"),
)
BOLD_FONT = "DejaVuSans-Bold.ttf"
FONT_FILES = ("DejaVuSans.ttf", BOLD_FONT)
NO_FONT = "CLIPJOBS_CLIP_STYLE=full needs the DejaVu Sans font (apt-get install fonts-dejavu-core)"
_STDERR_LINES = 20
_LINE_MAX = 300
_COMMON = ("-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-y")
# The downloads are untrusted bytes: ffmpeg probes content, not names, and would
# happily read an HLS playlist or a concat list that names local files or URLs.
# Only plain media demuxers, and no protocol but the file itself.
_AUDIO_INPUT = (
    "-protocol_whitelist",
    "file",
    "-format_whitelist",
    "mp3,wav,mov,aac,ogg,flac,matroska",
)
_IMAGE_INPUT = (
    "-protocol_whitelist",
    "file",
    "-format_whitelist",
    "image2,jpeg_pipe,png_pipe,webp_pipe,bmp_pipe,gif",
    # A small file can declare a huge picture; 40 Mpx is more than any cover needs.
    "-max_pixels",
    "40000000",
)


def check_ffmpeg(ffmpeg: str = "ffmpeg") -> str:
    """ffmpeg's version line; ConfigError when it is missing or cannot encode H.264 and AAC.

    Blocking (it runs ffmpeg twice): call it at start-up, before serving.
    """
    path = shutil.which(ffmpeg)
    if path is None:
        raise ConfigError(MISSING)
    version = _output(path, "-version")
    encoders = _output(path, "-encoders")
    missing = [name for name in ("libx264", "aac") if f" {name} " not in encoders]
    if missing:
        raise ConfigError(
            f"CLIPJOBS_CLIP_RENDER=on needs an ffmpeg with {' and '.join(missing)} "
            f"({path} lacks it; apt-get install ffmpeg)"
        )
    return version.splitlines()[0] if version else path


def _output(path: str, flag: str) -> str:
    """What ``path -hide_banner flag`` prints; ConfigError when it does not run to exit 0."""
    try:
        return subprocess.run(  # noqa: S603 - a fixed argv, no shell
            [path, "-hide_banner", flag],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise ConfigError(f"{MISSING}: {path} does not run ({type(exc).__name__})") from exc


def find_fonts(fonts_dir: Path | None = None) -> Path:
    """The directory holding DejaVu Sans (regular and bold); ConfigError when there is none."""
    candidates = (fonts_dir,) if fonts_dir is not None else FONT_DIRS
    for directory in candidates:
        if directory is not None and all((directory / name).is_file() for name in FONT_FILES):
            return directory
    where = str(fonts_dir) if fonts_dir is not None else ", ".join(map(str, FONT_DIRS))
    raise ConfigError(f"{NO_FONT}: no {' and '.join(FONT_FILES)} in {where}")


def compose_args(cover: str | None, color: str) -> list[str]:
    """Arguments making ``frame.jpg``: the cover fitted into 1080×1920, or a solid color."""
    if cover is None:
        source = ["-f", "lavfi", "-i", f"color=c={color}:s={WIDTH}x{HEIGHT}"]
        graph = "[0:v]format=yuvj420p[out]"
    else:
        source = [*_IMAGE_INPUT, "-i", cover]
        small_w, small_h = WIDTH // 10, HEIGHT // 10
        # Blurring a tenth-size copy and scaling it up costs little and looks the same.
        graph = (
            f"[0:v]split=2[a][b];"
            f"[a]scale={small_w}:{small_h}:force_original_aspect_ratio=increase,"
            f"crop={small_w}:{small_h},boxblur=4,scale={WIDTH}:{HEIGHT},setsar=1[bg];"
            f"[b]scale={WIDTH}:{HEIGHT}:force_original_aspect_ratio=decrease,setsar=1[fg];"
            f"[bg][fg]overlay=(W-w)/2:(H-h)/2,format=yuvj420p[out]"
        )
    return [
        *_COMMON,
        *source,
        "-filter_complex",
        graph,
        "-map",
        "[out]",
        "-frames:v",
        "1",
        "-update",
        "1",
        "-q:v",
        "2",
        "-f",
        "image2",
        "frame.jpg",
    ]


def encode_args(
    audio: str, output: str, *, clip_max_s: float, fps: float, preset: str, audio_kbps: int
) -> list[str]:
    """Arguments looping ``frame.jpg`` over ``audio`` into an H.264/AAC MP4 ``output``.

    ``-t`` on the audio input makes the audio stream end at
    min(its length, clip_max_s); ``-shortest`` with ``+shortest`` ends the
    video there too (ffmpeg may add up to one frame).
    """
    return [
        *_COMMON,
        *_IMAGE_INPUT,
        "-i",
        "frame.jpg",
        *_AUDIO_INPUT,
        "-t",
        f"{clip_max_s:.3f}",
        "-i",
        audio,
        "-filter_complex",
        f"[0:v]loop=loop=-1:size=1,setpts=N/({fps:g}*TB),format=yuv420p[v]",
        "-map",
        "[v]",
        "-map",
        "1:a:0",
        "-c:v",
        "libx264",
        "-preset",
        preset,
        "-tune",
        "stillimage",
        *_mp4_output(output, fps=fps, audio_kbps=audio_kbps),
    ]


def _mp4_output(output: str, *, fps: float, audio_kbps: int) -> list[str]:
    """The output options both styles encode with, ending in ``output``.

    yuv420p at ``fps`` and AAC; ``-shortest`` with ``+shortest`` ends the clip with
    the audio; no metadata of the inputs; the index first (``+faststart``).
    """
    return [
        "-pix_fmt",
        "yuv420p",
        "-r",
        f"{fps:g}",
        "-c:a",
        "aac",
        "-b:a",
        f"{audio_kbps}k",
        "-shortest",
        "-fflags",
        "+shortest",
        "-max_interleave_delta",
        "0",
        "-map_metadata",
        "-1",
        "-movflags",
        "+faststart",
        "-f",
        "mp4",
        output,
    ]


def _still(name: str) -> list[str]:
    return ["-frames:v", "1", "-update", "1", "-q:v", "2", "-f", "image2", name]


def compose_full_args(cover: str | None, color: str) -> list[str]:
    """Arguments making ``still.jpg`` (background, channel name, title) and ``square.jpg``.

    ``title.ass`` and the ``fonts`` directory must be in the working
    directory. Without a cover the background is the solid color and there is
    no ``square.jpg``.
    """
    titles = "ass=filename=title.ass:fontsdir=fonts"
    if cover is None:
        source = ["-f", "lavfi", "-i", f"color=c={color}:s={WIDTH}x{HEIGHT}"]
        graph = f"[0:v]{titles},format=yuvj420p[bg]"
        return [*_COMMON, *source, "-filter_complex", graph, "-map", "[bg]", *_still("still.jpg")]
    small_w, small_h = WIDTH // 10, HEIGHT // 10
    size = COVER_BOX[2]
    graph = (
        f"[0:v]split=2[a][b];"
        f"[a]scale={small_w}:{small_h}:force_original_aspect_ratio=increase,"
        f"crop={small_w}:{small_h},boxblur=4,scale={WIDTH}:{HEIGHT},setsar=1,"
        # A little darker, so the white title and captions stand out on any cover.
        f"eq=brightness=-0.08,{titles},format=yuvj420p[bg];"
        f"[b]scale={size}:{size}:force_original_aspect_ratio=increase,crop={size}:{size},"
        f"setsar=1,format=yuvj420p[fg]"
    )
    return [
        *_COMMON,
        *_IMAGE_INPUT,
        "-i",
        cover,
        "-filter_complex",
        graph,
        "-map",
        "[bg]",
        *_still("still.jpg"),
        "-map",
        "[fg]",
        *_still("square.jpg"),
    ]


def encode_full_args(
    audio: str,
    output: str,
    *,
    cover: bool,
    captions: bool,
    zoom_s: float,
    clip_max_s: float,
    fps: float,
    preset: str,
    audio_kbps: int,
) -> list[str]:
    """Arguments rendering ``full``: the still, the zooming cover, the waveform, the captions.

    The cover grows by :data:`ZOOM` over ``zoom_s`` seconds (the clip's
    expected length), scaled with sub-pixel precision each frame and cropped
    back to its square, so it moves smoothly rather than in whole-pixel steps.
    ``captions.ass`` (when ``captions``) and ``fonts`` must be in the
    working directory. The clip ends with the audio, cut at ``clip_max_s``; the
    picture may run a few frames longer, but never more than one past the cap.
    """
    loop = f"loop=loop=-1:size=1,setpts=N/({fps:g}*TB)"
    inputs = [*_IMAGE_INPUT, "-i", "still.jpg"]
    x, y, size, _ = COVER_BOX
    wx, wy, ww, wh = WAVE_BOX
    graph = [f"[0:v]format=yuv420p,{loop}[bg]"]
    picture = "bg"
    if cover:
        inputs += [*_IMAGE_INPUT, "-i", "square.jpg"]
        frames = max(1, round(zoom_s * fps))
        grow = f"{size}*(1+{ZOOM:g}*min(n/{frames},1))"
        graph += [
            f"[1:v]format=yuv420p,{loop},"
            f"scale=w='2*trunc({grow}/2)':h=-2:eval=frame:flags=bicubic,crop={size}:{size}[fg]",
            f"[bg][fg]overlay={x}:{y}[pic]",
        ]
        picture = "pic"
    sound = 2 if cover else 1  # the audio is the input after the pictures
    # The audio is mapped straight from its input: through the graph, -shortest
    # could not end the endless looped picture when the audio ends.
    graph += [
        f"[{sound}:a]aformat=channel_layouts=mono,"
        f"showwaves=s={ww}x{wh}:mode=cline:scale=sqrt:rate={fps:g}:colors=white@0.8[wave]",
        # The audio sets the length (-shortest): showwaves drops the last part-frame.
        f"[{picture}][wave]overlay={wx}:{wy}:eof_action=pass"
        + (",ass=filename=captions.ass:fontsdir=fonts[v]" if captions else "[v]"),
    ]
    return [
        *_COMMON,
        *inputs,
        *_AUDIO_INPUT,
        "-t",
        f"{clip_max_s:.3f}",
        "-i",
        audio,
        "-filter_complex",
        ";".join(graph),
        "-map",
        "[v]",
        "-map",
        f"{sound}:a:0",
        "-c:v",
        "libx264",
        "-preset",
        preset,
        # -shortest lets a few buffered frames through after the audio ends; at most
        # one past the cap (a cut exactly at the cap would make -shortest cut the
        # audio at the last frame's start, up to a frame early).
        "-t",
        f"{clip_max_s + 1 / fps:.3f}",
        *_mp4_output(output, fps=fps, audio_kbps=audio_kbps),
    ]


class FfmpegRun:
    """One ffmpeg child in ``cwd``: waited for, and killed if we are cancelled or time out."""

    def __init__(
        self,
        ffmpeg: str,
        args: Sequence[str],
        cwd: Path,
        *,
        timeout_s: float,
        on_start: Callable[[int], None] | None = None,
    ) -> None:
        self._argv = [ffmpeg, *args]
        self._cwd = cwd
        self._timeout_s = timeout_s
        self._on_start = on_start
        self._tail: deque[str] = deque(maxlen=_STDERR_LINES)

    async def run(self) -> None:
        """Run to exit 0, or raise PostProcessError (failed, killed by a signal, timed out)."""
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._argv,
                cwd=self._cwd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                # Its own session: a Ctrl-C meant for the server must not make ffmpeg
                # exit 255 and fail the job; the server's shutdown cancels us and we kill it.
                start_new_session=True,
            )
        except OSError as exc:
            raise PostProcessError(
                ClipErrorCode.CLIP_RENDER_FAILED.value,
                f"cannot start {self._argv[0]}: {exc.strerror or exc}",
            ) from exc
        if self._on_start is not None:
            self._on_start(proc.pid)
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._drain(proc)
                code = await proc.wait()
        except TimeoutError:
            await _kill(proc)
            raise PostProcessError(
                ClipErrorCode.CLIP_RENDER_TIMEOUT.value,
                f"ffmpeg ran longer than {self._timeout_s:g} s and was stopped",
            ) from None
        except BaseException:
            await _kill(proc)
            raise
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            raise PostProcessError(
                ClipErrorCode.CLIP_RENDER_KILLED.value, f"ffmpeg was killed by {name}"
            )
        if code != 0:
            last = self._tail[-1] if self._tail else "no message"
            raise PostProcessError(
                ClipErrorCode.CLIP_RENDER_FAILED.value, f"ffmpeg exited with {code}: {last}"
            )

    async def _drain(self, proc: asyncio.subprocess.Process) -> None:
        stream = proc.stderr
        if stream is None:  # pragma: no cover - stderr is a pipe above
            return
        # Chunks, not readline(): a corrupt input can make ffmpeg print a line longer
        # than the stream's limit, and readline() would raise instead of reading on.
        pending = b""
        while chunk := await stream.read(4096):
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                self._keep(line)
            pending = pending[-4 * _LINE_MAX :]
        self._keep(pending)

    def _keep(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace").strip()
        if text:
            self._tail.append(text[:_LINE_MAX])


async def _kill(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL the child and reap it, even if we are cancelled again meanwhile."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    # communicate() reads stderr to EOF too, so the pipe transport closes cleanly;
    # shielded, so a second cancellation cannot leave the child unreaped.
    await asyncio.shield(proc.communicate())
