"""Downloads for post-processing: only allowed http(s) hosts, streamed to disk under a size cap.

The URLs come from Suno's answers and callbacks, which anyone who learns a
callback URL can forge, so nothing is fetched unless its scheme is http(s)
and its host is one the operator allowed — and every redirect is checked the
same way before it is followed. This module is the one place where aiohttp
exceptions become :class:`~clipjobs.errors.PostProcessError`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from enum import Enum
from functools import partial
from pathlib import Path
from typing import BinaryIO, NamedTuple
from urllib.parse import urljoin, urlsplit

import aiohttp

from clipjobs.errors import ConfigError, PostProcessError

from ._codes import ClipErrorCode
from ._fsio import off_loop

__all__ = ["Downloaded", "Fetcher", "Kind", "UrlPolicy", "describe_url"]

_log = logging.getLogger("clipjobs.pipeline.ffmpeg")

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 5
# Worth asking again: the CDN is busy or briefly down.
_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
_CHUNK = 64 * 1024
# Writes go through a thread; batching keeps the hops few.
_WRITE_BATCH = 1024 * 1024


class Kind(Enum):
    """What is being downloaded: decides the accepted content types."""

    AUDIO = "audio"
    IMAGE = "image"

    def accepts(self, content_type: str) -> bool:
        main = content_type.partition("/")[0]
        if self is Kind.AUDIO:
            return main == "audio" or content_type == "application/octet-stream"
        return main == "image"


def describe_url(url: str) -> str:
    """The URL without its query, fragment or credentials: signed CDN links stay out of errors."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparseable URL>"
    if not parts.scheme:
        return "<relative URL>"
    return f"{parts.scheme}://{host}{port}{parts.path}"


class UrlPolicy:
    """Which URLs may be fetched: http(s) only, to hosts named exactly or as ``*.suffix``.

    Entries are host names, case-insensitive; a full URL is accepted too and
    its host is taken (so the Suno base URL can be passed as it is). Ports
    are not part of the match.
    """

    def __init__(self, allowed_hosts: Sequence[str]) -> None:
        exact: set[str] = set()
        suffixes: list[str] = []
        for entry in allowed_hosts:
            host = entry.strip().lower()
            if "://" in host:
                host = (urlsplit(host).hostname or "").lower()
            host = host.rstrip(".")
            if not host:
                continue
            if host.startswith("*."):
                suffixes.append(host[1:])
            else:
                exact.add(host)
        if not exact and not suffixes:
            raise ConfigError(
                "post-processing needs at least one allowed media host "
                "(the Suno base URL's host, or CLIPJOBS_CLIP_HOSTS)"
            )
        self._exact = frozenset(exact)
        self._suffixes = tuple(suffixes)

    def __repr__(self) -> str:
        hosts = sorted(self._exact) + [f"*{s}" for s in self._suffixes]
        return f"UrlPolicy({hosts!r})"

    def check(self, url: str) -> None:
        """Raise CLIP_HOST_NOT_ALLOWED unless ``url`` may be fetched."""
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").rstrip(".")
            parts.port  # noqa: B018 - a bad port raises ValueError here, not in aiohttp
        except ValueError as exc:
            raise PostProcessError(
                ClipErrorCode.CLIP_HOST_NOT_ALLOWED.value, f"not a fetchable URL: {exc}"
            ) from None
        if parts.scheme not in ("http", "https"):
            raise PostProcessError(
                ClipErrorCode.CLIP_HOST_NOT_ALLOWED.value,
                f"only http and https media URLs are fetched, not {parts.scheme or 'none'!r}",
            )
        if not host or not (
            host in self._exact or any(host.endswith(suffix) for suffix in self._suffixes)
        ):
            raise PostProcessError(
                ClipErrorCode.CLIP_HOST_NOT_ALLOWED.value,
                f"media host {host or '(none)'!r} is not allowed ({describe_url(url)}); "
                "add it to CLIPJOBS_CLIP_HOSTS if it is the provider's",
            )


class Downloaded(NamedTuple):
    size: int
    content_type: str


class _Retry(Exception):
    """A failure worth another attempt; becomes CLIP_DOWNLOAD_FAILED when attempts run out."""


class Fetcher:
    """Streams one URL to one file, enforcing the policy, the size cap and the content type."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        policy: UrlPolicy,
        *,
        max_bytes: int,
        timeout_s: float,
        attempts: int = 3,
        retry_backoff_s: float = 0.5,
    ) -> None:
        self._session = session
        self.policy = policy
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.attempts = max(1, attempts)
        self.retry_backoff_s = retry_backoff_s

    async def fetch(
        self, url: str, dest: Path, kind: Kind, *, log_extra: Mapping[str, str] | None = None
    ) -> Downloaded:
        """Download ``url`` into ``dest`` (overwritten); its size and content type.

        On failure ``dest`` may hold a partial body: the caller owns the
        directory and removes it.
        """
        for attempt in range(1, self.attempts + 1):
            try:
                return await self._fetch_once(url, dest, kind)
            except _Retry as exc:
                if attempt >= self.attempts:
                    raise PostProcessError(
                        ClipErrorCode.CLIP_DOWNLOAD_FAILED.value,
                        f"{exc} (after {attempt} attempt{'s' if attempt > 1 else ''})",
                    ) from exc.__cause__
                delay = self.retry_backoff_s * 2 ** (attempt - 1)
                _log.warning("%s; retrying in %.1f s", exc, delay, extra=log_extra)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _fetch_once(self, url: str, dest: Path, kind: Kind) -> Downloaded:
        current = url
        for _ in range(_MAX_REDIRECTS + 1):
            self.policy.check(current)
            shown = describe_url(current)
            try:
                async with self._session.get(
                    current,
                    allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                    # A compressed body would make the size cap count the wrong bytes.
                    headers={"Accept-Encoding": "identity", "Accept": f"{kind.value}/*"},
                ) as response:
                    status = response.status
                    if status in _REDIRECTS:
                        location = response.headers.get("Location")
                        if not location:
                            raise PostProcessError(
                                ClipErrorCode.CLIP_DOWNLOAD_FAILED.value,
                                f"{shown} answered HTTP {status} without a Location",
                            )
                        current = urljoin(current, location)
                        continue
                    if status in _RETRY_STATUSES:
                        raise _Retry(f"{kind.value} download from {shown} answered HTTP {status}")
                    if status != 200:
                        raise PostProcessError(
                            ClipErrorCode.CLIP_DOWNLOAD_FAILED.value,
                            f"{kind.value} download from {shown} answered HTTP {status}",
                        )
                    return await self._save(response, dest, kind, shown)
            except (PostProcessError, _Retry):
                raise
            except (aiohttp.ClientError, TimeoutError) as exc:
                what = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
                raise _Retry(f"{kind.value} download from {shown} failed: {what}") from exc
        raise PostProcessError(
            ClipErrorCode.CLIP_DOWNLOAD_FAILED.value,
            f"{kind.value} download from {describe_url(url)}: more than {_MAX_REDIRECTS} redirects",
        )

    async def _save(
        self, response: aiohttp.ClientResponse, dest: Path, kind: Kind, shown: str
    ) -> Downloaded:
        content_type = response.content_type
        if not kind.accepts(content_type):
            raise PostProcessError(
                ClipErrorCode.CLIP_BAD_CONTENT_TYPE.value,
                f"{kind.value} download from {shown} is {content_type!r}",
            )
        announced = response.content_length
        if announced is not None and announced > self.max_bytes:
            raise self._too_large(kind, shown)
        size = 0
        batch = bytearray()
        handle: BinaryIO = await off_loop(lambda: dest.open("wb"))
        try:
            # Content-Length may lie or be absent (chunked): count what arrives.
            async for chunk in response.content.iter_chunked(_CHUNK):
                size += len(chunk)
                if size > self.max_bytes:
                    raise self._too_large(kind, shown)
                batch += chunk
                if len(batch) >= _WRITE_BATCH:
                    data = bytes(batch)
                    batch.clear()
                    await off_loop(partial(handle.write, data))
            if batch:
                data = bytes(batch)
                await off_loop(partial(handle.write, data))
        finally:
            # Synchronous on purpose: it must run even while being cancelled.
            handle.close()
        if size == 0:
            raise PostProcessError(
                ClipErrorCode.CLIP_DOWNLOAD_FAILED.value,
                f"{kind.value} download from {shown} was empty",
            )
        return Downloaded(size, content_type)

    def _too_large(self, kind: Kind, shown: str) -> PostProcessError:
        return PostProcessError(
            ClipErrorCode.CLIP_TOO_LARGE.value,
            f"{kind.value} download from {shown} is larger than {self.max_bytes} bytes",
        )
