"""Issue #24 item 3: slow and idle clients cannot hold connections without bound."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from _serving import TOKEN, Served, get, read_answer, served, status_of

from clipjobs_aiohttp import ApiConfig

pytestmark = pytest.mark.asyncio

HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
#: The issue's load: 300 connections trickling header lines, 1,000 idle keep-alive ones.
SLOW, IDLE = 300, 1000
#: The issue sent a header line every 10 s; the tests scale time, not the load.
TRICKLE_S = 0.1


async def _idle(running: Served) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection that made one keep-alive request and then says nothing."""
    reader, writer = await asyncio.open_connection(*running.host_port)
    writer.write(HEALTHZ)
    assert status_of(await read_answer(reader)) == 200
    return reader, writer


async def _until_closed(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, trickle: bytes | None = None
) -> bytes:
    """Trickle header lines (or ``trickle``) until the server answers or hangs up; its answer."""
    for line in range(100_000):  # a bound for the linter; the server ends it long before
        try:
            data = await asyncio.wait_for(reader.read(65536), TRICKLE_S)
        except TimeoutError:
            try:
                writer.write(trickle or b"X-Slow-%d: 1\r\n" % line)
                await writer.drain()
            except ConnectionError:
                return b""
            continue
        except ConnectionError:
            return b""
        return data + await reader.read() if data else b""
    raise AssertionError("the server never closed a slow connection")


async def _slow(running: Served) -> bytes:
    reader, writer = await asyncio.open_connection(*running.host_port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        return await _until_closed(reader, writer)
    finally:
        await _close_all([(reader, writer)])


async def _close_all(conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]) -> None:
    for _, writer in conns:
        writer.close()
    for _, writer in conns:
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def _hung_up_on(reader: asyncio.StreamReader) -> bytes:
    """What an idle connection hears before the server hangs up (nothing, if all is well)."""
    try:
        return await reader.read()
    except ConnectionError:
        return b""


async def test_past_the_connection_limit_new_clients_get_503(tmp_path: Path) -> None:
    """1,000 idle keep-alive connections fill CLIPJOBS_MAX_CONNECTIONS; the 300 slow ones get 503.

    Each refused client reads a 503 ``TOO_MANY_CONNECTIONS`` with ``Retry-After``
    and the server's hang-up; one warning is logged; once a connection leaves,
    a new client is served again.
    """
    async with served(tmp_path, head_timeout_s=3600) as running:
        idle = []
        try:
            for _ in range(IDLE // 100):
                idle += await asyncio.gather(*(_idle(running) for _ in range(100)))
            async with asyncio.timeout(60):  # a hang guard: unbounded, they trickled for good
                answers = await asyncio.gather(*(_slow(running) for _ in range(SLOW)))
            for answer in answers:
                assert status_of(answer) == 503, answer[:100]
                assert b"Retry-After: 1" in answer and b'"TOO_MANY_CONNECTIONS"' in answer
            assert running.server.metrics.value("clipjobs_http_connections_refused_total") == SLOW
            warnings = [line for line in running.log.getvalue().split("\n") if "limit" in line]
            assert len(warnings) == 1 and " WARNING " in warnings[0]
            await _close_all(idle[:1])
            async with asyncio.timeout(30):  # a hang guard: the server notices the hang-up
                while True:
                    answer = await running.request(get("/healthz"))
                    if status_of(answer) == 200:
                        break
                    await asyncio.sleep(0.05)
        finally:
            await _close_all(idle)


async def test_slow_and_idle_connections_are_closed_streams_are_not(tmp_path: Path) -> None:
    """300 clients trickling a header line and 1,000 idle keep-alive ones are all closed.

    The server hangs up on each once it has gone CLIPJOBS_HEAD_TIMEOUT_S without
    a complete request head (they were all still open after 90 s); an SSE stream,
    long by design, keeps getting its keep-alives well past that.
    """
    config = ApiConfig(sse_keepalive_s=0.2)
    async with served(tmp_path, head_timeout_s=0.5, api_config=config) as running:
        job = await _start_job(running)
        stream_reader, stream_writer = await asyncio.open_connection(*running.host_port)
        stream_writer.write(
            f"GET /api/music-clips/jobs/{job}/events HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {TOKEN}\r\n\r\n".encode()
        )
        idle = []
        for _ in range(IDLE // 100):
            idle += await asyncio.gather(*(_idle(running) for _ in range(100)))
        slow = asyncio.gather(*(_slow(running) for _ in range(SLOW)))
        async with asyncio.timeout(60):  # a hang guard: they stayed open for good before
            closed = await asyncio.gather(*(_hung_up_on(reader) for reader, _ in idle))
            trickled = await slow
        assert closed == [b""] * IDLE  # hung up on, nothing more said
        for answer in trickled:
            assert answer == b"" or status_of(answer) in (408, 503), answer[:100]
        keep_alives = 0
        async with asyncio.timeout(30):  # a hang guard
            while keep_alives < 10:
                line = await stream_reader.readline()
                assert line, "the SSE stream was closed"
                keep_alives += line.startswith(b": keep-alive")
        await _close_all([*idle, (stream_reader, stream_writer)])


async def _start_job(running: Served) -> str:
    reader, writer = await asyncio.open_connection(*running.host_port)
    writer.write(
        b"POST /api/music-clips/channels/c1/runOnce HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: Bearer " + TOKEN.encode() + b"\r\nContent-Length: 0\r\n\r\n"
    )
    answer = await read_answer(reader)
    await _close_all([(reader, writer)])
    assert status_of(answer) == 202, answer
    return answer.split(b'"jobId": "', 1)[1].split(b'"', 1)[0].decode()


async def test_a_trickled_body_is_408_and_the_connection_closed(tmp_path: Path) -> None:
    """Headers at once, then one body byte at a time: 408 REQUEST_TIMEOUT, then the hang-up."""
    config = ApiConfig(body_timeout_s=0.5)
    async with served(tmp_path, api_config=config) as running:
        reader, writer = await asyncio.open_connection(*running.host_port)
        writer.write(
            b"POST /api/music-clips/channels/c1/runOnce HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
        )
        async with asyncio.timeout(60):  # a hang guard: the body would never end
            answer = await _until_closed(reader, writer, b" ")
        await _close_all([(reader, writer)])
        assert status_of(answer) == 408 and b'"REQUEST_TIMEOUT"' in answer, answer
        assert await running.server.store.list_jobs("alice", "c1") == []
