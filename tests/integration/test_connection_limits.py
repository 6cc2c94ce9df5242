"""The server's connection limits over real loopback sockets: header timeout, keep-alive
timeout and the connection cap, with small values so that every test ends in a second or two."""

from __future__ import annotations

import asyncio
import contextlib
import time

import msgspec
import pytest

from ingest.settings import IngestSettings
from tests.integration.harness import RunningIngest, running_ingest
from tests.integration.rawhttp import read_response

HEADER_TIMEOUT = 0.5
KEEPALIVE_TIMEOUT = 0.7
CAP = 3


@pytest.fixture
def settings(settings: IngestSettings) -> IngestSettings:
    return msgspec.structs.replace(
        settings,
        header_timeout_seconds=HEADER_TIMEOUT,
        keepalive_timeout_seconds=KEEPALIVE_TIMEOUT,
        max_connections=CAP,
    )


async def _closed_after(reader: asyncio.StreamReader, within: float) -> float:
    """Seconds until the server closed the connection (EOF or reset), failing after `within`."""
    started = time.monotonic()
    async with asyncio.timeout(within):
        try:
            while await reader.read(4096):
                pass
        except ConnectionResetError:
            pass
    return time.monotonic() - started


async def _connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


def _get(path: str, port: int) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()


async def test_a_silent_connection_is_closed_after_the_header_timeout(
    ingest: RunningIngest,
) -> None:
    reader, writer = await _connect(ingest.port)
    elapsed = await _closed_after(reader, within=HEADER_TIMEOUT + 2)
    writer.close()
    assert HEADER_TIMEOUT - 0.1 <= elapsed < KEEPALIVE_TIMEOUT + 0.5


async def test_half_a_request_head_is_closed_after_the_header_timeout(
    ingest: RunningIngest,
) -> None:
    reader, writer = await _connect(ingest.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    await writer.drain()
    # Trickling bytes does not extend the deadline.
    for _ in range(3):
        await asyncio.sleep(HEADER_TIMEOUT / 4)
        writer.write(b"a")
    elapsed = await _closed_after(reader, within=HEADER_TIMEOUT + 2)
    writer.close()
    assert elapsed < HEADER_TIMEOUT


async def test_every_request_head_on_a_kept_alive_connection_has_the_header_timeout(
    settings: IngestSettings,
) -> None:
    # A keep-alive timeout far beyond the header timeout: only the latter can close it. The
    # header timeout is longer than the module's: the first two heads must beat it even when
    # the machine is loaded, as the whole suite loads it.
    header_timeout = 1.5
    patient = msgspec.structs.replace(
        settings, header_timeout_seconds=header_timeout, keepalive_timeout_seconds=10.0
    )
    async with running_ingest(patient) as server:
        reader, writer = await _connect(server.port)
        writer.write(_get("/healthz", server.port))
        assert (await read_response(reader)).status == 200
        # Idle between requests longer than the header timeout: that is keep-alive's to judge.
        await asyncio.sleep(header_timeout * 2)
        writer.write(_get("/healthz", server.port))
        assert (await read_response(reader)).status == 200
        # A third head, trickled: closed the header timeout after its first byte.
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        await writer.drain()
        started = time.monotonic()
        with contextlib.suppress(ConnectionError):
            for _ in range(3):
                await asyncio.sleep(header_timeout / 4)
                writer.write(b"a")
        await _closed_after(reader, within=header_timeout + 3)
        elapsed = time.monotonic() - started
        writer.close()
        assert header_timeout - 0.1 <= elapsed < header_timeout + 1.0


async def test_an_idle_keepalive_connection_is_closed(ingest: RunningIngest) -> None:
    reader, writer = await _connect(ingest.port)
    # Two requests on one connection, the second after the header timeout has passed:
    # a complete first head disarms it.
    writer.write(_get("/healthz", ingest.port))
    assert (await read_response(reader)).status == 200
    await asyncio.sleep(HEADER_TIMEOUT + 0.1)
    writer.write(_get("/healthz", ingest.port))
    assert (await read_response(reader)).status == 200
    elapsed = await _closed_after(reader, within=KEEPALIVE_TIMEOUT + 2)
    writer.close()
    assert KEEPALIVE_TIMEOUT - 0.2 <= elapsed < KEEPALIVE_TIMEOUT + 1.5


async def test_connections_beyond_the_cap_are_refused_and_those_within_keep_working(
    ingest: RunningIngest,
) -> None:
    within = [await _connect(ingest.port) for _ in range(CAP)]
    try:
        for _, writer in within:
            writer.write(_get("/healthz", ingest.port))
        for reader, _ in within:
            assert (await read_response(reader)).status == 200

        reader, writer = await _connect(ingest.port)
        writer.write(_get("/healthz", ingest.port))
        refused = await read_response(reader)
        assert refused.status == 503
        assert refused.json()["error_code"] == "TOO_MANY_CONNECTIONS"
        await _closed_after(reader, within=2)
        writer.close()

        # Those within the cap still answer on their kept-alive connections.
        for reader, writer in within:
            writer.write(_get("/healthz", ingest.port))
            assert (await read_response(reader)).status == 200
    finally:
        for _, writer in within:
            writer.close()

    # A closed connection frees its place.
    await asyncio.sleep(0.1)
    reader, writer = await _connect(ingest.port)
    writer.write(_get("/healthz", ingest.port))
    assert (await read_response(reader)).status == 200
    writer.close()
