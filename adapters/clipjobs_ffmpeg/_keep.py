"""``FileMediaKeeper``: Suno's files copied into ``CLIPJOBS_MEDIA_DIR``, content-addressed.

The copy goes through the same :class:`~._fetch.Fetcher` as post-processing
(allowed hosts only, redirects checked, size cap, content type checked), into
a hidden ``.kept/.part-<random>`` file; once complete it is hashed, flushed to
disk and renamed to ``.kept/<sha256><suffix>`` in one step. A crash leaves at
most a hidden part file, which no route serves and :meth:`sweep` removes;
the job's copy is simply done again after the restart. Two jobs with the same
file share one copy.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import secrets
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import aiohttp

from clipjobs.app.keeping import KeptFile, kept_name
from clipjobs.domain.events import MediaKind

from ._fetch import Fetcher, Kind, UrlPolicy
from ._fsio import off_loop

__all__ = ["KEPT_DIR", "FileMediaKeeper", "KeptFiles"]

_log = logging.getLogger("clipjobs.pipeline.media")

#: Where the copies live inside the media directory (hidden: ``add_media`` never serves it).
KEPT_DIR = ".kept"
_PART = ".part-"
_NAME = re.compile(r"[0-9a-f]{64}\.[a-z0-9]{1,5}")
_CHUNK = 1024 * 1024


def _hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _publish(part: Path, final: Path) -> None:
    """Flush ``part`` to disk and rename it to ``final`` (an existing copy is the same bytes)."""
    with part.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(part, final)
    fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename itself survives a power cut
    finally:
        os.close(fd)


class FileMediaKeeper:
    """Implements :class:`clipjobs.app.keeping.MediaKeeper` on a directory."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        media_dir: Path,
        *,
        allowed_hosts: Sequence[str],
        max_bytes: int = 50 * 1024 * 1024,
        timeout_s: float = 120.0,
        attempts: int = 2,
        retry_backoff_s: float = 0.5,
    ) -> None:
        self.root = Path(media_dir) / KEPT_DIR
        self._fetcher = Fetcher(
            session,
            UrlPolicy(allowed_hosts),
            max_bytes=max_bytes,
            timeout_s=timeout_s,
            attempts=attempts,
            retry_backoff_s=retry_backoff_s,
        )
        # A part file older than this belongs to no copy of any process still running.
        self._stale_after_s = 4 * attempts * timeout_s + 60

    def __repr__(self) -> str:
        return f"FileMediaKeeper({str(self.root)!r})"

    def path(self, name: str) -> Path | None:
        """The stored file called ``name`` (``<sha256><suffix>``), if the name is one."""
        if not _NAME.fullmatch(name):
            return None
        return self.root / name

    async def keep(self, url: str, kind: MediaKind, *, job_id: str) -> KeptFile:
        await off_loop(lambda: self.root.mkdir(parents=True, exist_ok=True))
        part = self.root / f"{_PART}{job_id[-24:]}-{secrets.token_hex(8)}"
        try:
            got = await self._fetcher.fetch(
                url, part, Kind(kind.value), log_extra={"job_id": job_id}
            )
            sha = await off_loop(lambda: _hash(part))
            final = self.root / kept_name(sha, got.content_type)
            await off_loop(lambda: _publish(part, final))
        except BaseException:
            part.unlink(missing_ok=True)  # synchronous: it must run while being cancelled
            raise
        _log.info(
            "[%s] kept %s %s (%d bytes)",
            job_id,
            kind.value,
            final.name,
            got.size,
            extra={"job_id": job_id},
        )
        return KeptFile(sha, got.size, got.content_type)

    def sweep(self, now: float | None = None) -> int:
        """Remove part files left by a crash (blocking; at start-up); how many went."""
        cutoff = (time.time() if now is None else now) - self._stale_after_s
        removed = 0
        try:
            entries = list(self.root.glob(_PART + "*"))
        except OSError:
            return 0
        for entry in entries:
            try:
                if entry.stat().st_mtime < cutoff:
                    entry.unlink()
                    removed += 1
            except OSError:
                continue
        return removed


class KeptFiles:
    """The kept files of a media directory, removed by hash (the pruner's
    :class:`~clipjobs.app.retention.MediaSweeper`)."""

    def __init__(self, media_dir: Path) -> None:
        self.root = Path(media_dir) / KEPT_DIR

    async def remove(self, sha256s: Sequence[str], older_than: datetime) -> tuple[int, int]:
        """Delete the kept files of these hashes written before ``older_than`` (the pruner's
        :class:`~clipjobs.app.retention.MediaSweeper`); ``(files, bytes)``."""
        cutoff = older_than.timestamp()

        def run() -> tuple[int, int]:
            files = size = 0
            for sha in sha256s:
                if not re.fullmatch(r"[0-9a-f]{64}", sha):
                    continue
                for path in self.root.glob(sha + ".*"):
                    try:
                        stat = path.stat()
                        if stat.st_mtime < cutoff:
                            path.unlink()
                            files, size = files + 1, size + stat.st_size
                    except OSError:
                        continue
            return files, size

        return await asyncio.to_thread(run)
