"""Downloads for post-processing: only allowed http(s) hosts, streamed to disk under a size cap.

The URLs come from Suno's answers and callbacks, which anyone who learns a
callback URL can forge, so nothing is fetched unless its scheme is http(s)
and its host is one the operator allowed — and every redirect is checked the
same way before it is followed. This module is the one place where aiohttp
exceptions become :class:`~clipjobs.domain.errors.PostProcessError`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
from collections.abc import Mapping, Sequence
from enum import Enum
from functools import partial
from pathlib import Path
from typing import BinaryIO, NamedTuple
from urllib.parse import urljoin, urlsplit

import aiohttp
from attrs import frozen

from clipjobs.domain.errors import ConfigError, PostProcessError

from ._codes import ClipErrorCode
from ._fsio import off_loop

__all__ = [
    "WEB_PORTS",
    "Downloaded",
    "Fetcher",
    "HostRule",
    "Kind",
    "UrlPolicy",
    "check_media_hosts",
    "describe_url",
    "parse_host_rule",
]

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


#: Ports a bare host allows: the web's. Anything else must be named, ``host:port``.
WEB_PORTS = frozenset({80, 443})
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
# Second-level names under which anyone can register (co.uk, com.au…): a wildcard
# right under one spans many owners. clipjobs carries no public suffix list; these
# are the common ones, and a single label (``*.com``) is always refused.
_OPEN_SECOND_LEVELS = frozenset(
    {"ac", "co", "com", "edu", "gov", "ltd", "me", "mil", "ne", "net", "nom", "or", "org", "plc"}
)


@frozen
class HostRule:
    """One allowed host: exact or ``*.suffix``, on the web ports or on one named port."""

    host: str
    wildcard: bool
    port: int | None  # None: 80 and 443

    def allows(self, host: str, port: int) -> bool:
        if port not in ((self.port,) if self.port is not None else WEB_PORTS):
            return False
        if self.wildcard:
            return host.endswith("." + self.host)
        return host == self.host

    def __str__(self) -> str:
        name = f"*.{self.host}" if self.wildcard else self.host
        shown = f"[{name}]" if ":" in name else name
        return f"{shown}:{self.port}" if self.port is not None else shown


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def parse_host_rule(entry: str) -> HostRule:
    """``cdn.example``, ``cdn.example:8443``, ``*.cdn.example``, or a URL (its host and port).

    ValueError, with the reason, for what could never match or would match too
    much: a malformed name or port, a path, a wildcard over a whole top-level
    domain (``*.com``) or a common second-level registry (``*.co.uk``).
    """
    text = entry.strip().lower()
    if not text:
        raise ValueError("an empty entry")
    is_url = "://" in text
    parts = urlsplit(text if is_url else "//" + text)
    if is_url and parts.scheme not in ("http", "https"):
        raise ValueError(f"{entry!r}: only http(s) URLs name media hosts")
    if not is_url and (parts.path or parts.query or parts.fragment):
        raise ValueError(f"{entry!r} is not host or host:port")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{entry!r} carries credentials")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{entry!r} has a port outside 1-65535") from None
    if port == 0:
        raise ValueError(f"{entry!r} has a port outside 1-65535")
    host = (parts.hostname or "").rstrip(".")
    wildcard = host.startswith("*.")
    if wildcard:
        host = host[2:]
    if _is_ip(host):
        if wildcard:
            raise ValueError(f"{entry!r}: a wildcard over an IP address")
        return HostRule(host, False, port)
    labels = host.split(".")
    if not host.isascii() or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"{entry!r} is not a host name (IDNs in their xn-- form)")
    if wildcard and (
        len(labels) < 2
        or (len(labels) == 2 and len(labels[1]) == 2 and labels[0] in _OPEN_SECOND_LEVELS)
    ):
        raise ValueError(f"{entry!r} spans a whole public suffix; name the provider's domain")
    return HostRule(host, wildcard, port)


def check_media_hosts(entries: Sequence[str], *, name: str = "CLIPJOBS_CLIP_HOSTS") -> None:
    """A start-up check: ConfigError, one line naming ``name``, for an entry that cannot be."""
    for entry in entries:
        try:
            parse_host_rule(entry)
        except ValueError as exc:
            raise ConfigError(f"{name}: {exc}") from None


class UrlPolicy:
    """Which URLs may be fetched: http(s) only, to allowed hosts, on allowed ports.

    Entries (case-insensitive): ``host`` (ports 80 and 443), ``host:port``
    (that port only), ``*.suffix`` and ``*.suffix:port`` (subdomains), or a URL,
    whose host and port are taken (so the Suno base URL can be passed as it
    is). A malformed or over-broad entry is a ConfigError (see
    :func:`parse_host_rule`).
    """

    def __init__(self, allowed_hosts: Sequence[str]) -> None:
        rules: list[HostRule] = []
        for entry in allowed_hosts:
            if not entry.strip():
                continue
            try:
                rules.append(parse_host_rule(entry))
            except ValueError as exc:
                raise ConfigError(f"allowed media host {exc}") from None
        if not rules:
            raise ConfigError(
                "post-processing needs at least one allowed media host "
                "(the Suno base URL's host, or CLIPJOBS_CLIP_HOSTS)"
            )
        self._rules = tuple(rules)

    def __repr__(self) -> str:
        return f"UrlPolicy({sorted(str(rule) for rule in self._rules)!r})"

    def check(self, url: str) -> None:
        """Raise CLIP_HOST_NOT_ALLOWED unless ``url`` may be fetched."""
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").rstrip(".")
            explicit = parts.port  # a bad port raises ValueError here, not in aiohttp
        except ValueError as exc:
            raise PostProcessError(
                ClipErrorCode.CLIP_HOST_NOT_ALLOWED.value, f"not a fetchable URL: {exc}"
            ) from None
        if parts.scheme not in ("http", "https"):
            raise PostProcessError(
                ClipErrorCode.CLIP_HOST_NOT_ALLOWED.value,
                f"only http and https media URLs are fetched, not {parts.scheme or 'none'!r}",
            )
        port = explicit if explicit is not None else (443 if parts.scheme == "https" else 80)
        if not host or not any(rule.allows(host, port) for rule in self._rules):
            raise PostProcessError(
                ClipErrorCode.CLIP_HOST_NOT_ALLOWED.value,
                f"media host {host or '(none)'!r} on port {port} is not allowed "
                f"({describe_url(url)}); add it to CLIPJOBS_CLIP_HOSTS if it is the provider's "
                "(host for ports 80/443, host:port for another)",
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
            # What the server answered stays in the operator's log: the job's error is
            # shown to its owner, and a URL can point at a service that is not a CDN.
            _log.warning(
                "%s download from %s refused: content type %r",
                kind.value,
                shown,
                content_type[:100],
            )
            raise PostProcessError(
                ClipErrorCode.CLIP_BAD_CONTENT_TYPE.value,
                f"{kind.value} download from {shown} is not {kind.value}",
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
