"""tus concatenation through real ingest servers into MinIO, with the events read from Kafka.

Five partial uploads (four of 6 MiB and a smaller last one) are sent at once
through two instances, as tus-js-client's `parallelUploads` sends them; a final
upload naming them by absolute URL joins them inside MinIO. The stored file is
exactly the original, the topics hold one `upload.started` and one
`upload.completed` for the final and nothing for the pieces, and no piece is
left in the bucket.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator

import aiohttp
import msgspec
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from ingest.settings import IngestSettings
from schemas import UploadCompleted, UploadEvent, UploadStarted, decode
from schemas.topics import Topics
from tests.integration.harness import (
    RunningIngest,
    bucket_keys,
    open_uploads,
    running_ingest,
    stored_sha256,
)
from tests.media import MiB, fake_video_chunks, sha256_of

PIECES = [6 * MiB, 6 * MiB, 6 * MiB, 6 * MiB, MiB + 321]
OFFSET_STREAM = "application/offset+octet-stream"


@pytest.fixture
async def pair(settings: IngestSettings) -> AsyncIterator[tuple[RunningIngest, RunningIngest]]:
    a = msgspec.structs.replace(settings, instance_id="concat-a")
    b = msgspec.structs.replace(settings, instance_id="concat-b")
    async with running_ingest(a) as first, running_ingest(b) as second:
        yield first, second


def _tus(ingest: RunningIngest, user: str, **headers: str) -> dict[str, str]:
    return {**ingest.auth(user), "Tus-Resumable": "1.0.0", **headers}


def _pieces(seed: int) -> list[bytes]:
    """The file cut where tus-js-client would cut it, piece by piece."""
    chunks = fake_video_chunks(sum(PIECES), seed=seed, chunk=MiB)
    pending, pieces = b"", []
    for size in PIECES:
        while len(pending) < size:
            pending += next(chunks)
        pieces.append(pending[:size])
        pending = pending[size:]
    return pieces


async def _send_partial(
    http: aiohttp.ClientSession, ingest: RunningIngest, user: str, piece: bytes
) -> str:
    """Create a partial upload and PATCH its piece; its absolute URL."""
    headers = _tus(ingest, user, **{"Upload-Length": str(len(piece)), "Upload-Concat": "partial"})
    async with http.post(f"{ingest.url}/v1/tus/", headers=headers) as created:
        assert created.status == 201, await created.text()
        assert created.headers["Upload-Concat"] == "partial"
        url = f"{ingest.url}{created.headers['Location']}"
    patch = _tus(
        ingest,
        user,
        **{"Upload-Offset": "0", "Content-Type": OFFSET_STREAM, "Upload-Concat": "partial"},
    )
    async with http.patch(url, data=piece, headers=patch) as patched:
        assert patched.status == 204, await patched.text()
        assert patched.headers["Upload-Offset"] == str(len(piece))
    return url


async def _events_of(settings: IngestSettings, upload_ids: set[str]) -> list[UploadEvent]:
    """Every event of these uploads the uploads and progress topics hold now, to their ends."""
    topics = Topics(settings.topic_prefix)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False
    )
    await consumer.start()
    found: list[UploadEvent] = []
    try:
        partitions = [
            TopicPartition(name, number)
            for name, spec in topics.specs()
            if name in (topics.uploads, topics.progress)
            for number in range(spec.partitions)
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        async with asyncio.timeout(30):
            while [p for p in partitions if await consumer.position(p) < ends[p]]:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for record in records:
                        event = decode(record.value, record.headers)
                        if isinstance(event, UploadEvent) and event.upload_id in upload_ids:
                            found.append(event)
    finally:
        await consumer.stop()
    return sorted(found, key=lambda event: event.sequence)


async def test_partials_sent_at_once_are_joined_in_minio_into_one_upload(
    pair: tuple[RunningIngest, RunningIngest],
    http: aiohttp.ClientSession,
    settings: IngestSettings,
) -> None:
    user = "joiner"
    pieces = _pieces(seed=41)
    urls = await asyncio.gather(
        *(_send_partial(http, pair[i % 2], user, piece) for i, piece in enumerate(pieces))
    )
    partial_ids = {url.rsplit("/", 1)[-1] for url in urls}
    del pieces

    name = base64.b64encode(b"joined.mp4").decode()
    headers = _tus(
        pair[1],
        user,
        **{"Upload-Concat": "final;" + " ".join(urls), "Upload-Metadata": f"filename {name}"},
    )
    started = time.perf_counter()
    async with http.post(f"{pair[1].url}/v1/tus/", headers=headers) as created:
        assert created.status == 201, await created.text()
        final_path = created.headers["Location"]
    print(
        f"joined {len(PIECES)} partial uploads ({sum(PIECES)} bytes) in "
        f"{time.perf_counter() - started:.2f} s, SHA-256 read back included"
    )
    final_id = final_path.rsplit("/", 1)[-1]

    size = sum(PIECES)
    expected = sha256_of(size, seed=41)
    session, _ = await pair[0].services.sessions.load(final_id)
    assert session.status == "completed"
    assert session.result is not None
    assert session.result.sha256 == expected
    assert await stored_sha256(settings, session.s3_key) == (expected, size)
    assert await open_uploads(settings, session.s3_key) == []

    async with http.head(f"{pair[0].url}{final_path}", headers=_tus(pair[0], user)) as head:
        assert head.status == 200
        assert head.headers["Upload-Concat"] == "final;" + " ".join(urls)
        assert head.headers["Upload-Offset"] == head.headers["Upload-Length"] == str(size)

    events = await _events_of(settings, partial_ids | {final_id})
    assert [type(e) for e in events] == [UploadStarted, UploadCompleted]
    assert {e.upload_id for e in events} == {final_id}, "partial uploads emit nothing"
    completed = events[-1]
    assert isinstance(completed, UploadCompleted)
    assert (completed.size_bytes, completed.sha256, completed.protocol) == (size, expected, "tus")

    assert await bucket_keys(settings, "_ingest/tus/") == [], "no piece is left behind"
