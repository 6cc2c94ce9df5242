"""How many bytes the tus endpoint writes to S3 for many tiny PATCHes onto a large tail.

A recording proxy (tests/integration/s3_faults.py, no faults planned) sits between
one ingest server and the real MinIO and measures every request body the server sends.
The upload starts with 7 MiB committed (8 MiB parts), so its tail is large, the worst
case for rewriting it; then 256 PATCHes of 1 KiB each add to that tail without
filling the part, and a last PATCH completes the file. (Each tiny PATCH costs about
eight sequential S3 calls, some 100 ms on a busy two-core machine: 1,000 of them
took 86 s there, too long for the suite, and measured 5.06x.)

The bound comes from how `ingest.usecases.tus.tail` merges segments: a new segment
takes in the segments before it only while they are smaller than twice its size. The
7 MiB first segment is more than twice all the small ones together, so it is never
rewritten; among equal small PATCHes the rule is a binary counter: the k-th PATCH
writes 2^(trailing zero bits of k) KiB, and the sum over k <= N is at most
N * (1 + log2(N) / 2) KiB, reached exactly when N is a power of two: 5x for N = 256.
Segment bytes must stay within that; no part is uploaded before the part is full;
and the completing PATCH writes each part once (its UploadPart bodies add up to the
file). Session documents (the compare-and-swap state, rewritten on every PATCH) are
measured and bounded per PATCH too: their size must not grow with the tail.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import aiohttp
import msgspec
import pytest

from ingest.settings import IngestSettings
from tests.integration.harness import RunningIngest, running_ingest, stored_sha256
from tests.integration.s3_faults import Body, FaultyS3Proxy
from tests.integration.tus_requests import Source, create_upload, patch_upload
from tests.media import MiB, sha256_of

KiB = 1024
PATCHES = 256
START = 7 * MiB
SIZE = 12 * MiB
USER = "nibbler"


@pytest.fixture
async def recorded(settings: IngestSettings) -> AsyncIterator[tuple[RunningIngest, FaultyS3Proxy]]:
    assert settings.part_size == 8 * MiB
    assert START + PATCHES * KiB < settings.part_size
    proxy = FaultyS3Proxy(settings.s3_endpoint().endpoint_url or "")
    async with proxy.serving() as url:
        through = msgspec.structs.replace(settings, s3_endpoint_url=url)
        async with running_ingest(through) as server:
            yield server, proxy


def _written(bodies: list[Body], kind: str) -> int:
    return sum(b.decoded_size for b in bodies if kind in b.path or kind == b.operation)


async def test_tiny_patches_on_a_large_tail_write_a_bounded_amount(
    recorded: tuple[RunningIngest, FaultyS3Proxy],
    http: aiohttp.ClientSession,
    settings: IngestSettings,
) -> None:
    ingest, proxy = recorded
    path = await create_upload(http, ingest, USER, SIZE, "nibbled.mp4")
    source = Source(SIZE, seed=81)
    response = await patch_upload(http, ingest, USER, path, 0, source.take(START))
    assert response.status == 204

    proxy.bodies.clear()
    offset = START
    for _ in range(PATCHES):
        response = await patch_upload(http, ingest, USER, path, offset, source.take(KiB))
        assert response.status == 204, response.status
        offset += KiB
        assert int(response.headers["Upload-Offset"]) == offset
    appends = list(proxy.bodies)
    sent = PATCHES * KiB
    segments = _written(appends, "/tail-")
    documents = _written(appends, "/sessions/")
    print(
        f"{PATCHES} PATCHes of 1 KiB: segments {segments / sent:.2f}x the bytes sent, "
        f"session documents {documents / PATCHES:.0f} bytes a PATCH, "
        f"{len(appends)} S3 writes"
    )
    assert sent <= segments <= sent * (1 + math.log2(PATCHES) / 2)
    assert _written(appends, "UploadPart") == 0
    assert documents <= PATCHES * 4 * KiB  # a few small writes a PATCH, whatever the tail

    proxy.bodies.clear()
    response = await patch_upload(http, ingest, USER, path, offset, source.take(SIZE - offset))
    assert response.status == 204
    assert int(response.headers["Upload-Offset"]) == SIZE
    assert _written(proxy.bodies, "UploadPart") == SIZE
    assert _written(proxy.bodies, "/tail-") == 0

    session, _ = await ingest.services.sessions.load(path.rsplit("/", 1)[-1])
    assert await stored_sha256(settings, session.s3_key) == (sha256_of(SIZE, seed=81), SIZE)
