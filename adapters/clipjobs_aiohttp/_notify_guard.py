"""Where outgoing webhooks may go: https to public addresses, checked after DNS too.

A subscription URL is checked when it is made (``check_url``: a clear 400
otherwise), and again at every delivery: the sender's connector resolves
names through ``GuardedResolver``, which drops private, loopback and
link-local addresses, so a name that later resolves inward (DNS rebinding)
gets no connection. ``CLIPJOBS_NOTIFY_ALLOW_PRIVATE=on`` lifts both rules
(tests, internal networks).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult

__all__ = [
    "GuardedResolver",
    "InwardAddress",
    "Resolve",
    "UrlRefused",
    "check_url",
    "is_public",
    "literal_refused",
    "system_resolve",
]

#: A host name to the IP addresses it resolves to (injected in tests).
Resolve = Callable[[str], Awaitable[list[str]]]

MAX_URL_LENGTH = 2048


class InwardAddress(OSError):
    """The name resolves only to addresses webhooks may not be sent to."""


class UrlRefused(Exception):
    """A subscription URL we will not send to: ``code`` for the API, a clear message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


async def system_resolve(host: str) -> list[str]:
    """The addresses the system resolver gives for ``host`` (any family)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def is_public(address: str) -> bool:
    """A globally routable unicast address: not private, loopback, link-local or reserved."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


async def check_url(url: str, *, allow_private: bool, resolve: Resolve) -> str:
    """``url`` if webhooks may be sent to it; UrlRefused with a code and a clear message if not."""
    if len(url) > MAX_URL_LENGTH:
        raise UrlRefused("INVALID_URL", f"url is longer than {MAX_URL_LENGTH} characters.")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise UrlRefused("INVALID_URL", "url is not a valid URL.") from None
    if parts.scheme not in ("https", "http") or not host:
        raise UrlRefused("INVALID_URL", "url must be an https:// URL with a host.")
    if parts.username is not None or parts.password is not None:
        raise UrlRefused("INVALID_URL", "url must not carry a user name or password.")
    if parts.scheme == "http" and not allow_private:
        raise UrlRefused(
            "URL_NOT_HTTPS",
            "url must use https (http only with CLIPJOBS_NOTIFY_ALLOW_PRIVATE=on).",
        )
    if allow_private:
        return url
    literal = _literal(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            addresses = await resolve(host)
        except OSError:
            raise UrlRefused("URL_UNRESOLVABLE", f"url's host {host!r} does not resolve.") from None
        if not addresses:
            raise UrlRefused("URL_UNRESOLVABLE", f"url's host {host!r} does not resolve.")
    inward = [a for a in addresses if not is_public(a)]
    if inward:
        raise UrlRefused(
            "URL_NOT_ALLOWED",
            f"url's host {host!r} is a private, loopback or link-local address ({inward[0]}).",
        )
    return url


class GuardedResolver(AbstractResolver):
    """An aiohttp resolver that refuses inward addresses (unless they are allowed)."""

    def __init__(self, resolve: Resolve, *, allow_private: bool) -> None:
        self._resolve = resolve
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = await self._resolve(host)
        if not self._allow_private:
            addresses = [a for a in addresses if is_public(a)]
        if not addresses:
            raise InwardAddress(f"{host} resolves to no address webhooks may be sent to")
        results: list[ResolveResult] = []
        for address in addresses:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
            results.append(
                {
                    "hostname": host,
                    "host": str(ip),
                    "port": port,
                    "family": socket.AF_INET6 if ip.version == 6 else socket.AF_INET,
                    "proto": 0,
                    "flags": socket.AI_NUMERICHOST,
                }
            )
        return results

    async def close(self) -> None:
        return None


def literal_refused(url: str, *, allow_private: bool) -> bool:
    """True when ``url``'s host is an inward IP literal (aiohttp resolves no literal)."""
    if allow_private:
        return False
    host = urlsplit(url).hostname or ""
    literal = _literal(host)
    return literal is not None and not is_public(literal)
