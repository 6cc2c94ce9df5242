"""tus uploads through real ingest servers into MinIO, with their events on Kafka.

Two instances share the bucket and the topics, as behind a load balancer: an
upload is sent as PATCHes of random sizes to each in turn, a PATCH is cut
mid-body and resumed from the offset HEAD reports, and a terminated upload
leaves no multipart upload behind.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec
import pytest

from ingest.settings import IngestSettings
from schemas import UploadCancelled, UploadCompleted, UploadProgress, UploadStarted
from tests.integration.harness import (
    RunningIngest,
    ended,
    object_exists,
    open_uploads,
    part_sizes,
    running_ingest,
    stored_sha256,
    upload_events,
)
from tests.integration.rawhttp import open_request
from tests.integration.tus_requests import (
    OFFSET_STREAM,
    Source,
    create_upload,
    head_offset,
    patch_upload,
    tus_headers,
)
from tests.media import MiB, sha256_of

SIZE = 40 * MiB


@pytest.fixture
async def pair(settings: IngestSettings) -> AsyncIterator[tuple[RunningIngest, RunningIngest]]:
    a = msgspec.structs.replace(settings, instance_id="tus-a")
    b = msgspec.structs.replace(settings, instance_id="tus-b")
    async with running_ingest(a) as first, running_ingest(b) as second:
        yield first, second


async def _session(ingest: RunningIngest, path: str) -> Any:
    session, _ = await ingest.services.sessions.load(path.rsplit("/", 1)[-1])
    return session


async def test_patches_of_random_sizes_through_two_instances_store_the_file(
    pair: tuple[RunningIngest, RunningIngest],
    http: aiohttp.ClientSession,
    settings: IngestSettings,
) -> None:
    path = await create_upload(http, pair[0], "tusser", SIZE, "resumed.mp4")
    source = Source(SIZE, seed=21)
    rng = random.Random(21)
    offset = 0
    turn = 0
    while offset < SIZE:
        size = min(rng.randint(1, 12 * MiB) + rng.randint(0, 999), SIZE - offset)
        node = pair[turn % 2]
        response = await patch_upload(http, node, "tusser", path, offset, source.take(size))
        assert response.status == 204, response.status
        assert int(response.headers["Upload-Offset"]) == offset + size
        offset += size
        # A complete upload no longer expires; one still open says until when it may resume.
        assert ("Upload-Expires" in response.headers) == (offset < SIZE)
        turn += 1
        assert await head_offset(http, pair[turn % 2], "tusser", path) == offset
    assert turn >= 4

    expected = sha256_of(SIZE, seed=21)
    session = await _session(pair[1], path)
    assert session.status == "completed"
    assert session.result.sha256 == expected
    assert await stored_sha256(settings, session.s3_key) == (expected, SIZE)
    part = settings.part_size
    assert await part_sizes(settings, session.s3_key) == [part] * (SIZE // part) + (
        [SIZE % part] if SIZE % part else []
    )
    assert await open_uploads(settings, session.s3_key) == []

    events = await upload_events(settings, session.session_id, until=ended)
    sequences = [e.sequence for e in events]
    assert sequences == sorted(set(sequences)), "sequence must strictly increase"
    assert isinstance(events[0], UploadStarted)
    completed = events[-1]
    assert isinstance(completed, UploadCompleted)
    assert completed.sha256 == expected
    assert completed.size_bytes == SIZE
    assert completed.protocol == "tus"
    assert completed.s3_key == session.s3_key
    progress = [e for e in events if isinstance(e, UploadProgress)]
    assert len(progress) >= SIZE // part
    assert [p.bytes_received for p in progress] == sorted(p.bytes_received for p in progress)


async def test_a_patch_cut_mid_body_is_resumed_from_the_head_offset(
    pair: tuple[RunningIngest, RunningIngest],
    http: aiohttp.ClientSession,
    settings: IngestSettings,
) -> None:
    size = 30 * MiB
    path = await create_upload(http, pair[0], "cutter", size, "cut.mp4")
    headers = tus_headers(
        pair[0],
        "cutter",
        **{"Upload-Offset": "0", "Content-Type": OFFSET_STREAM, "Content-Length": str(size)},
    )
    _, writer = await open_request(pair[0].port, "PATCH", path, headers)
    cut = Source(size, seed=22)
    for _ in range(13):
        writer.write(cut.take(MiB))
        await writer.drain()
    writer.write(cut.take(12345))
    await writer.drain()
    await asyncio.sleep(0.5)
    writer.transport.abort()

    # What arrived was kept: the offset moves past 0 once the server has seen the cut.
    deadline = time.monotonic() + 15
    offset = 0
    while offset == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        offset = await head_offset(http, pair[1], "cutter", path)
    assert offset >= settings.part_size, offset

    source = Source(size, seed=22)
    source.skip(offset)
    response = await patch_upload(http, pair[1], "cutter", path, offset, source.take(size - offset))
    assert response.status == 204, response.status
    assert int(response.headers["Upload-Offset"]) == size

    session = await _session(pair[0], path)
    assert session.status == "completed"
    expected = sha256_of(size, seed=22)
    assert await stored_sha256(settings, session.s3_key) == (expected, size)
    events = await upload_events(settings, session.session_id, until=ended)
    sequences = [e.sequence for e in events]
    assert sequences == sorted(set(sequences))
    assert isinstance(events[-1], UploadCompleted)
    assert events[-1].sha256 == expected


async def test_termination_leaves_no_multipart_upload_and_no_tail(
    pair: tuple[RunningIngest, RunningIngest],
    http: aiohttp.ClientSession,
    settings: IngestSettings,
) -> None:
    size = 20 * MiB
    path = await create_upload(http, pair[0], "quitter", size, "quit.mp4")
    source = Source(size, seed=23)
    sent = 9 * MiB + 77
    response = await patch_upload(http, pair[0], "quitter", path, 0, source.take(sent))
    assert response.status == 204
    session = await _session(pair[0], path)
    assert await open_uploads(settings, session.s3_key) != []
    tail = f"_ingest/tus/{session.session_id}/tail-{8 * MiB}-{sent}"
    assert await object_exists(settings, tail)

    async with http.delete(
        f"{pair[1].url}{path}", headers=tus_headers(pair[1], "quitter")
    ) as deleted:
        assert deleted.status == 204
        assert deleted.headers["Tus-Resumable"] == "1.0.0"
    assert await open_uploads(settings, session.s3_key) == []
    assert not await object_exists(settings, tail)
    async with http.head(f"{pair[0].url}{path}", headers=tus_headers(pair[0], "quitter")) as gone:
        assert gone.status == 410
    events = await upload_events(settings, session.session_id, until=ended)
    assert isinstance(events[-1], UploadCancelled)


async def test_small_patches_on_a_large_tail_add_segments_on_real_s3(
    pair: tuple[RunningIngest, RunningIngest],
    http: aiohttp.ClientSession,
    settings: IngestSettings,
) -> None:
    size = 12 * MiB
    path = await create_upload(http, pair[0], "nibbler", size, "nibbled.mp4")
    source = Source(size, seed=31)
    offset = 15 * MiB // 2  # a 7.5 MiB tail
    assert (
        await patch_upload(http, pair[0], "nibbler", path, 0, source.take(offset))
    ).status == 204
    for n in range(40):
        response = await patch_upload(http, pair[n % 2], "nibbler", path, offset, source.take(1024))
        assert response.status == 204, response.status
        offset += 1024
    assert pair[0].services.tus is not None
    tus_session, _ = await pair[0].services.tus.sessions.load(path.rsplit("/", 1)[-1])
    segments = tus_session.state.tail_segments
    assert segments[0] == (0, 15 * MiB // 2), "the big first segment is never rewritten"
    assert 2 <= len(segments) <= 8
    assert segments[-1][1] == offset

    response = await patch_upload(
        http, pair[1], "nibbler", path, offset, source.take(size - offset)
    )
    assert response.status == 204
    expected = sha256_of(size, seed=31)
    session = await _session(pair[1], path)
    assert session.result.sha256 == expected
    assert await stored_sha256(settings, session.s3_key) == (expected, size)
    for start, end in segments:
        assert not await object_exists(
            settings, f"_ingest/tus/{session.session_id}/tail-{start}-{end}"
        )
