"""clipjobs_ffmpeg: post-processing — the generated song and its cover as a vertical video clip.

``FfmpegPostProcessor`` implements the core's ``PostProcessor`` port: it
downloads the first track's audio and cover (http(s), allowed hosts only,
size-capped, content type checked), renders a 1080×1920 H.264/AAC MP4 with
ffmpeg into the media directory atomically, and returns the clip's URL under
``DEFAULT_PUBLIC_PREFIX`` (``/media``), where the HTTP server serves that
directory. ``check_ffmpeg`` is the start-up check for ``CLIPJOBS_CLIP_RENDER=on``,
``check_media_hosts`` the one for ``CLIPJOBS_CLIP_HOSTS``. ``FileMediaKeeper``
implements the core's ``MediaKeeper`` with the same fetcher: succeeded jobs'
files copied into the media directory before Suno's links expire.
"""

from __future__ import annotations

from ._codes import CaptionsNote, ClipErrorCode
from ._fetch import check_media_hosts
from ._ffmpeg import check_ffmpeg, find_fonts
from ._keep import KEPT_DIR, FileMediaKeeper, KeptFiles
from ._processor import DEFAULT_PUBLIC_PREFIX, STYLES, FfmpegPostProcessor

__all__ = [
    "DEFAULT_PUBLIC_PREFIX",
    "KEPT_DIR",
    "STYLES",
    "CaptionsNote",
    "ClipErrorCode",
    "FfmpegPostProcessor",
    "FileMediaKeeper",
    "KeptFiles",
    "check_ffmpeg",
    "check_media_hosts",
    "find_fonts",
]
