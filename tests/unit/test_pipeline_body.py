"""The metered body: limits enforced on the chunk that passes them, transport errors translated."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from ingest.errors import (
    ChecksumMismatch,
    ClientDisconnected,
    IncompleteBody,
    QuotaExceeded,
    TooLarge,
    TooSmall,
    UploadTimeout,
)
from ingest.pipeline.body import MeteredBody, SizeLimits
from tests.fakes import ScriptedBody, upload_target


async def _drain(body: MeteredBody, into: list[bytes]) -> None:
    async for chunk in body:
        into.append(chunk)


def test_limits_come_from_the_target() -> None:
    limits = SizeLimits.of(
        upload_target(max_size=10, min_size=2, declared_size=5, quota_bytes_remaining=7)
    )
    assert limits == SizeLimits(max_size=10, min_size=2, declared_size=5, quota_remaining=7)


@pytest.mark.parametrize(
    ("limits", "error"),
    [
        (SizeLimits(max_size=100, declared_size=101), TooLarge),
        (SizeLimits(max_size=100, declared_size=100, quota_remaining=99), QuotaExceeded),
        (SizeLimits(max_size=100, min_size=10, declared_size=9), TooSmall),
    ],
)
def test_a_declared_size_outside_the_limits_is_refused(
    limits: SizeLimits, error: type[Exception]
) -> None:
    with pytest.raises(error):
        limits.check_declared()


def test_boundaries_are_inclusive() -> None:
    limits = SizeLimits(max_size=100, min_size=10, declared_size=100, quota_remaining=100)
    limits.check_declared()
    limits.check_received(100)
    limits.check_complete(100)
    with pytest.raises(TooLarge):
        limits.check_received(101)
    with pytest.raises(IncompleteBody):
        limits.check_complete(99)
    with pytest.raises(TooSmall):
        SizeLimits(max_size=100, min_size=10).check_complete(9)


def test_declared_size_is_judged_before_the_maximum_and_quota() -> None:
    limits = SizeLimits(max_size=1_000, declared_size=100, quota_remaining=50)
    with pytest.raises(TooLarge, match="declared"):
        limits.check_received(101)
    with pytest.raises(QuotaExceeded):
        limits.check_received(51)


async def test_counts_and_reports_each_chunk() -> None:
    seen: list[int] = []

    async def on_chunk(size: int) -> None:
        seen.append(size)

    body = MeteredBody(ScriptedBody(b"x" * 250, 100).chunks(), SizeLimits(max_size=1_000), on_chunk)
    assert [len(c) async for c in body] == [100, 100, 50]
    assert seen == [100, 100, 50]
    assert body.received == 250
    assert body.ended


async def test_the_chunk_that_passes_the_maximum_is_never_handed_on() -> None:
    seen: list[int] = []

    async def on_chunk(size: int) -> None:
        seen.append(size)

    source = ScriptedBody(b"x" * 1_000, 100)
    body = MeteredBody(source.chunks(), SizeLimits(max_size=250), on_chunk)
    got: list[bytes] = []
    with pytest.raises(TooLarge) as refused:
        await _drain(body, got)
    assert sum(map(len, got)) == 200
    assert seen == [100, 100]
    assert source.sent == 300  # read one chunk past the limit, not the whole body
    assert refused.value.details == {"max_size": 250, "received": 300}


@pytest.mark.parametrize(
    "failure",
    [
        ConnectionResetError("reset by peer"),
        asyncio.IncompleteReadError(b"", 100),
        OSError("broken pipe"),
        RuntimeError("payload error"),
    ],
)
async def test_transport_failures_become_client_disconnected(failure: Exception) -> None:
    body = MeteredBody(ScriptedBody(b"x" * 100, then=failure).chunks(), SizeLimits(max_size=1_000))
    with pytest.raises(ClientDisconnected) as gone:
        await _drain(body, [])
    assert gone.value.__cause__ is failure
    assert gone.value.event_code == "CLIENT_DISCONNECTED"


async def test_a_read_timeout_is_a_timeout() -> None:
    body = MeteredBody(ScriptedBody(b"", then=TimeoutError()).chunks(), SizeLimits(max_size=10))
    with pytest.raises(UploadTimeout):
        await anext(body)


async def test_domain_errors_and_cancellation_pass_through() -> None:
    refused = ChecksumMismatch("tus checksum")
    body = MeteredBody(ScriptedBody(b"", then=refused).chunks(), SizeLimits(max_size=10))
    with pytest.raises(ChecksumMismatch) as raised:
        await anext(body)
    assert raised.value is refused

    async def cancelled() -> AsyncIterator[bytes]:
        raise asyncio.CancelledError
        yield b""

    with pytest.raises(asyncio.CancelledError):
        await anext(MeteredBody(cancelled(), SizeLimits(max_size=10)))
