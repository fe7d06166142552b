"""Issue #24 item 8: media is fetched from allowed hosts on allowed ports, and says little."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from _ffmpeg_harness import MediaServer, Steps, clip_job, listing, processor

from clipjobs.domain.errors import ConfigError, PostProcessError
from clipjobs_ffmpeg import ClipErrorCode, check_media_hosts
from clipjobs_ffmpeg._fetch import UrlPolicy, parse_host_rule


@pytest.mark.asyncio
async def test_a_bare_host_allows_the_web_ports_only(
    server: MediaServer, session: aiohttp.ClientSession, media_dir: Path
) -> None:
    """``api.sunoapi.org:6379`` is refused; a host named bare is fetched from on 80/443 only.

    The media server listens on another port: allowed as ``127.0.0.1`` it is
    never asked; allowed as ``127.0.0.1:<port>`` it is.
    """
    suno = UrlPolicy(["https://api.sunoapi.org"])
    suno.check("https://api.sunoapi.org/file.mp3")
    suno.check("http://api.sunoapi.org/file.mp3")
    for url in ("http://api.sunoapi.org:6379/", "https://api.sunoapi.org:8443/file.mp3"):
        with pytest.raises(PostProcessError) as info:
            suno.check(url)
        assert info.value.code == ClipErrorCode.CLIP_HOST_NOT_ALLOWED

    job = clip_job(server.url("/media/track-1.mp3"), server.url("/media/cover-1.jpeg"))
    with pytest.raises(PostProcessError) as info:
        await processor(session, media_dir, allowed_hosts=["127.0.0.1"]).process(job, Steps())
    assert info.value.code == ClipErrorCode.CLIP_HOST_NOT_ALLOWED
    assert f"on port {server.port}" in str(info.value)
    assert sum(server.hits.values()) == 0 and listing(media_dir) == []
    allowed = [f"127.0.0.1:{server.port}"]
    clip = await processor(session, media_dir, allowed_hosts=allowed).process(job, Steps())
    assert clip.url.endswith(".mp4")


@pytest.mark.asyncio
async def test_a_refused_answer_is_not_quoted_in_the_error(
    server: MediaServer, session: aiohttp.ClientSession, media_dir: Path
) -> None:
    """A server answering ``application/json`` instead of audio: the job's error says only that."""
    with pytest.raises(PostProcessError) as info:
        await processor(session, media_dir).process(clip_job(server.url("/api.mp3")), Steps())
    assert info.value.code == ClipErrorCode.CLIP_BAD_CONTENT_TYPE
    message = str(info.value)
    assert "is not audio" in message
    assert "json" not in message and "service details" not in message


@pytest.mark.parametrize(
    "entry",
    [
        "*.com",
        "*.co.uk",
        "*.com.au",
        "*",
        "*.",
        "cdn.example:99999",
        "cdn.example:0",
        "cdn.example/path",
        "user@cdn.example",
        "ftp://cdn.example",
        "*.10.0.0.1",
        "bad_host.example",
        "-cdn.example",
        "cdn..example",
        "cdn.exämple",
    ],
)
def test_broad_or_malformed_patterns_are_refused_at_start_up(entry: str) -> None:
    """A pattern over a whole public suffix, or one that can never match: one ConfigError line."""
    with pytest.raises(ConfigError) as info:
        check_media_hosts([entry])
    assert str(info.value).startswith("CLIPJOBS_CLIP_HOSTS: ") and "\n" not in str(info.value)


def test_host_and_port_patterns_match_what_they_say() -> None:
    """``cdn.example:443`` matches https://cdn.example (it never matched); ``:8443`` only 8443."""
    policy = UrlPolicy(["cdn.example:443", "*.media.example:8443", "[::1]:9000", "10.0.0.7"])
    for url in (
        "https://cdn.example/a.mp3",
        "https://CDN.example.:443/a.mp3",
        "https://eu.media.example:8443/a.mp3",
        "http://[::1]:9000/a.mp3",
        "http://10.0.0.7/a.mp3",
    ):
        policy.check(url)
    for url in (
        "http://cdn.example/a.mp3",  # port 80: the entry named 443
        "https://eu.media.example/a.mp3",
        "https://media.example:8443/a.mp3",  # a wildcard is for subdomains
        "http://[::1]/a.mp3",
        "http://10.0.0.7:8080/a.mp3",
    ):
        with pytest.raises(PostProcessError):
            policy.check(url)
    assert str(parse_host_rule("*.Example.ORG:8443")) == "*.example.org:8443"
