"""What only the embedded adapters do: their disk layout, key safety, bounded logs, slow readers.

What they share with the real adapters is in tests/contract.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from contextlib import aclosing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiofiles
import aiofiles.os
import msgspec
import pytest

from infra.bus import BusRecord, InProcessEventBus, SubscriberDropped
from infra.checksums import crc32c_b64
from infra.env import GiB
from ingest.adapters.local_documents import LocalDocumentStore, version_of
from ingest.adapters.local_store import LocalObjectStore
from ingest.errors import (
    EventDeliveryError,
    MultipartUploadMissing,
    ServiceUnavailable,
    StorageError,
)
from ingest.ports import PartChecksum, StoredPart
from schemas import QuotaUpdated, Topics, UploadProgress, encode, topic_for
from tests.samples import SAMPLES

SOURCE = "/ingest/unit"
NOW = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


async def listing(path: Path) -> list[str]:
    try:
        return sorted(await aiofiles.os.listdir(path))
    except FileNotFoundError:
        return []


async def read_file(path: Path) -> bytes:
    async with aiofiles.open(path, "rb") as file:
        return await file.read()


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    return LocalObjectStore(tmp_path / "root", "videos", min_part_size=0)


# --- object store ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/etc/passwd",
        "../outside",
        "a/../../outside",
        "a//b",
        "a/./b",
        "a/",
        "a\x00b",
        "k" * 1025,
        "\udc80",
    ],
)
async def test_a_key_that_could_escape_the_root_is_refused(
    store: LocalObjectStore, tmp_path: Path, key: str
) -> None:
    with pytest.raises(StorageError) as refused:
        await store.start_multipart(key, content_type=None, metadata={})
    assert refused.value.details["code"] == "InvalidObjectName"
    with pytest.raises(StorageError):
        store.path_of(key)
    assert await listing(tmp_path) in (["root"], [])
    assert await listing(store.uploads_dir) == []


def test_a_bucket_name_s3_would_refuse_is_refused(tmp_path: Path) -> None:
    for bucket in [".multipart", "../x", "A", "ab", "a..b", "with/slash"]:
        with pytest.raises(ValueError, match="bucket"):
            LocalObjectStore(tmp_path, bucket)


async def test_parts_are_files_beside_a_manifest_until_complete_assembles_them(
    store: LocalObjectStore,
) -> None:
    key = "dashboard-uploads/u-1/upl-1/clip.mp4"
    upload = await store.start_multipart(key, content_type="video/mp4", metadata={"user": "u-1"})
    directory = store.uploads_dir / upload.upload_id
    manifest = await read_file(directory / "manifest.json")
    assert b'"content_type":"video/mp4"' in manifest
    assert b'"metadata":{"user":"u-1"}' in manifest

    bodies = [b"a" * 1000, b"b" * 1000, b"c" * 10]
    parts = [
        await upload.upload_part(number, body, crc32c_b64(body))
        for number, body in reversed(list(enumerate(bodies, start=1)))
    ]
    assert await listing(directory) == [
        "1",
        "1.json",
        "2",
        "2.json",
        "3",
        "3.json",
        "manifest.json",
    ]
    assert await read_file(directory / "2") == bodies[1]

    result = await upload.complete(list(reversed(parts)))  # any order: sorted like the S3 adapter

    assert result.size == 2010
    assert await read_file(store.path_of(key)) == b"".join(bodies)
    assert await listing(store.uploads_dir) == []
    assert await listing(store.root / ".trash") == []
    assert await store.object_size(key) == 2010
    async with aclosing(store.open_object(key, chunk_size=300)) as chunks:
        sizes = [len(chunk) async for chunk in chunks]
    assert sizes == [300] * 6 + [210]


async def test_abort_removes_the_upload_directory_and_every_part(store: LocalObjectStore) -> None:
    upload = await store.start_multipart("k.bin", content_type=None, metadata={})
    await upload.upload_part(1, b"x" * 100, crc32c_b64(b"x" * 100))
    await upload.abort()
    await upload.abort()
    assert await listing(store.uploads_dir) == []
    assert await listing(store.root / ".trash") == []
    with pytest.raises(StorageError) as missing:
        await store.object_size("k.bin")
    assert missing.value.details["code"] == "NoSuchKey"


async def test_an_abort_racing_part_uploads_leaves_nothing(store: LocalObjectStore) -> None:
    upload = await store.start_multipart("raced.bin", content_type=None, metadata={})
    body = b"p" * 200_000
    checksum = crc32c_b64(body)
    outcomes = await asyncio.gather(
        *(upload.upload_part(number, body, checksum) for number in range(1, 9)),
        upload.abort(),
        return_exceptions=True,
    )
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    assert all(isinstance(error, StorageError) for error in refused)
    await upload.abort()
    assert await store.incomplete_uploads("raced.bin") == []
    assert await listing(store.uploads_dir) == []
    assert await listing(store.root / ".trash") == []


async def test_part_lists_s3_would_refuse_are_refused(store: LocalObjectStore) -> None:
    upload = await store.start_multipart("lists.bin", content_type=None, metadata={})
    part = await upload.upload_part(1, b"one", crc32c_b64(b"one"))
    for parts, code in [([], "MalformedXML"), ([part, part], "InvalidPartOrder")]:
        with pytest.raises(StorageError) as refused:
            await upload.complete(parts)
        assert refused.value.details["code"] == code
    for number in (0, 10_001):
        with pytest.raises(StorageError) as refused:
            await upload.upload_part(number, b"one", crc32c_b64(b"one"))
        assert refused.value.details["code"] == "InvalidArgument"
    await upload.abort()


async def test_open_uploads_survive_a_restart_and_buckets_do_not_mix(tmp_path: Path) -> None:
    first = LocalObjectStore(tmp_path, "videos")
    upload = await first.start_multipart("k", content_type=None, metadata={})
    assert await LocalObjectStore(tmp_path, "videos").incomplete_uploads("k") == [upload.upload_id]
    assert await LocalObjectStore(tmp_path, "other").incomplete_uploads("k") == []


async def test_a_key_cannot_be_an_object_and_a_directory_of_others(
    store: LocalObjectStore,
) -> None:
    first = await store.start_multipart("a", content_type=None, metadata={})
    await first.complete([await first.upload_part(1, b"1", crc32c_b64(b"1"))])
    second = await store.start_multipart("a/b", content_type=None, metadata={})
    part = await second.upload_part(1, b"2", crc32c_b64(b"2"))
    with pytest.raises(StorageError):
        await second.complete([part])
    assert await store.incomplete_uploads("a/b") == [second.upload_id]
    await second.abort()


async def test_check_refuses_a_root_that_cannot_be_written(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    async with aiofiles.open(blocker, "wb") as file:
        await file.write(b"not a directory")
    with pytest.raises(ServiceUnavailable):
        await LocalObjectStore(blocker, "videos").check()
    await LocalObjectStore(tmp_path / "fresh", "videos").check()


@pytest.mark.parametrize("part_checksum", ["CRC32C", "SHA256"])
async def test_a_resumed_upload_lists_its_parts_even_without_their_digests(
    store: LocalObjectStore, part_checksum: PartChecksum
) -> None:
    """Also an upload opened as earlier versions did: the SHA-256 of its part is computed again."""
    upload = await store.start_multipart(
        "tus/file.bin", content_type=None, metadata={}, part_checksum=part_checksum
    )
    bodies = {1: b"a" * 500, 2: b"b" * 500, 4: b"d" * 7}
    stored = [await upload.upload_part(n, body, crc32c_b64(body)) for n, body in bodies.items()]
    await aiofiles.os.remove(store.uploads_dir / upload.upload_id / "2.json")  # as after a crash

    assert await store.stored_parts("tus/file.bin", upload.upload_id) == stored

    resumed = store.resume_multipart("tus/file.bin", upload.upload_id)
    body = b"c" * 500
    part = await resumed.upload_part(3, body, crc32c_b64(body))
    result = await resumed.complete([*stored[:2], part, stored[2]])
    assert await read_file(store.path_of("tus/file.bin")) == b"".join(
        [bodies[1], bodies[2], body, bodies[4]]
    )
    assert result.size == 1507


async def test_an_upload_resumed_under_another_key_or_a_forged_id_does_not_exist(
    store: LocalObjectStore,
) -> None:
    upload = await store.start_multipart("mine.bin", content_type=None, metadata={})
    for key, upload_id in [("theirs.bin", upload.upload_id), ("mine.bin", "../../etc")]:
        stranger = store.resume_multipart(key, upload_id)
        for call in (
            stranger.upload_part(1, b"x", crc32c_b64(b"x")),
            stranger.stored_parts(),
            stranger.complete([StoredPart(1, '"e"', 1, crc32c_b64(b"x"))]),
        ):
            with pytest.raises(MultipartUploadMissing) as missing:
                await call
            assert missing.value.details["code"] == "NoSuchUpload"
        await stranger.abort()  # like S3: nothing of this key to abort
    assert await store.incomplete_uploads("mine.bin") == [upload.upload_id]


async def test_small_objects_are_put_read_replaced_and_deleted(store: LocalObjectStore) -> None:
    assert await store.get_small("tails/upl-1/100") is None
    await store.put_small("tails/upl-1/100", b"tail")
    await store.put_small("tails/upl-1/100", b"newer tail")
    assert await store.get_small("tails/upl-1/100") == b"newer tail"
    assert [chunk async for chunk in store.read_object("tails/upl-1/100")] == [b"newer tail"]
    await store.delete("tails/upl-1/100")
    await store.delete("tails/upl-1/100")
    assert await store.get_small("tails/upl-1/100") is None
    assert await store.get_small("tails") is None  # a "directory" is no object
    assert await listing(store.root / ".tmp") == []


# --- document store -------------------------------------------------------------------


async def test_documents_are_plain_files_versioned_like_s3_etags(tmp_path: Path) -> None:
    documents = LocalDocumentStore(tmp_path)
    version = await documents.create("sessions/s-1.json", b'{"a": 1}')
    etag = hashlib.md5(b'{"a": 1}', usedforsecurity=False).hexdigest()
    assert version == version_of(b'{"a": 1}') == f'"{etag}"'
    assert await read_file(tmp_path / "documents" / "sessions" / "s-1.json") == b'{"a": 1}'
    assert await listing(tmp_path / ".tmp") == []

    reopened = LocalDocumentStore(tmp_path)
    stored = await reopened.read("sessions/s-1.json")
    assert stored is not None
    assert stored.version == version
    assert await reopened.list_keys("") == ["sessions/s-1.json"]


async def test_document_keys_are_checked(tmp_path: Path) -> None:
    documents = LocalDocumentStore(tmp_path)
    with pytest.raises(ValueError, match="empty"):
        await documents.create("", b"{}")
    with pytest.raises(StorageError):
        await documents.create("../escape", b"{}")
    with pytest.raises(StorageError):
        await documents.read("/etc/passwd")
    assert await documents.list_keys("../") == []

    await documents.create("users/u1/s1", b"")
    assert await documents.read("users/u1") is None  # a "directory" is no document
    with pytest.raises(StorageError):
        await documents.create("users/u1/s1/deeper", b"")


# --- event bus ------------------------------------------------------------------------


def progress(n: int, upload_id: str = "upl-7") -> UploadProgress:
    sample = SAMPLES["ingest.upload.progress"]
    assert isinstance(sample, UploadProgress)
    return msgspec.structs.replace(
        sample, event_id=f"e-{upload_id}-{n}", upload_id=upload_id, sequence=n
    )


def quota_snapshot(user_id: str, *, period_start: datetime = NOW, **fields: int) -> QuotaUpdated:
    return QuotaUpdated(
        user_id=user_id,
        period_start=period_start,
        period_end=period_start + timedelta(days=30),
        bytes_used=fields.get("bytes_used", GiB),
        bytes_limit=fields.get("bytes_limit", 20 * GiB),
        uploads_used=fields.get("uploads_used", 1),
        uploads_limit=fields.get("uploads_limit", 50),
        updated_at=period_start,
    )


async def test_emit_appends_the_record_the_kafka_sink_would_send() -> None:
    topics = Topics("dev.")
    bus = InProcessEventBus(topics, source=SOURCE)
    for event in SAMPLES.values():
        await bus.emit(event)
    for ce_type, event in SAMPLES.items():
        topic = topic_for(ce_type, topics)
        expected = encode(event, source=SOURCE)
        [record] = [r for r in bus.records(topic) if dict(r.headers)["ce_type"] == ce_type.encode()]
        assert (record.key, record.value, list(record.headers)) == tuple(expected)
        assert record.partition == 0
    await bus.check()


async def test_a_late_subscriber_reads_from_the_beginning_in_emit_order() -> None:
    bus = InProcessEventBus(Topics(), source=SOURCE)
    await bus.emit(SAMPLES["ingest.upload.started"])
    await bus.emit(progress(1))
    await bus.emit(SAMPLES["ingest.upload.completed"])

    everything = bus.subscribe(bus.topics.uploads, bus.topics.progress)
    live_only = bus.subscribe(bus.topics.uploads, from_beginning=False)
    assert not everything.caught_up
    assert live_only.caught_up
    seen = [await anext(everything) for _ in range(3)]
    assert [(r.topic, r.offset) for r in seen] == [
        ("ingest.uploads", 0),
        ("ingest.progress", 0),
        ("ingest.uploads", 1),
    ]
    assert everything.caught_up

    await bus.emit(SAMPLES["ingest.upload.failed"])
    assert (await anext(everything)).offset == 2
    assert (await anext(live_only)).offset == 2


async def test_logs_are_bounded_and_compacted_topics_keep_the_latest_per_key() -> None:
    bus = InProcessEventBus(Topics(), source=SOURCE, retention=3)
    for n in range(5):
        await bus.emit(progress(n, upload_id="same"))  # progress is compact,delete
    for _ in range(5):
        await bus.emit(SAMPLES["ingest.upload.started"])  # uploads is delete
    for user in ["a", "b", "a"]:
        await bus.emit(quota_snapshot(user))
    assert [r.offset for r in bus.records(bus.topics.uploads)] == [2, 3, 4]
    assert [r.offset for r in bus.records(bus.topics.progress)] == [4]
    assert [(r.key, r.offset) for r in bus.records(bus.topics.quota)] == [(b"b", 1), (b"a", 2)]
    assert bus.end_offset(bus.topics.quota) == 3


async def test_a_slow_subscriber_is_dropped_and_never_blocks_emit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = InProcessEventBus(Topics(), source=SOURCE, queue_size=2)
    slow = bus.subscribe(bus.topics.progress)
    keeping_up = bus.subscribe(bus.topics.progress)
    received: list[BusRecord] = []
    with caplog.at_level(logging.WARNING, logger="infra.bus"):
        for n in range(5):
            await bus.emit(progress(n))
            received.append(await anext(keeping_up))
    assert [r.offset for r in received] == [0, 1, 2, 3, 4]
    assert "fell more than 2 records behind" in caplog.text
    assert slow.dropped
    assert bus.subscriber_count(bus.topics.progress) == 1
    # It still gets what it held, then learns it missed the rest.
    assert [(await anext(slow)).offset for _ in range(2)] == [0, 1]
    with pytest.raises(SubscriberDropped):
        await anext(slow)


async def test_close_ends_every_subscription_and_refuses_emits() -> None:
    bus = InProcessEventBus(Topics(), source=SOURCE)
    subscription = bus.subscribe(bus.topics.uploads)
    waiting = asyncio.create_task(anext(subscription))
    await asyncio.sleep(0)
    bus.close()
    with pytest.raises(StopAsyncIteration):
        await waiting
    with pytest.raises(EventDeliveryError):
        await bus.emit(SAMPLES["ingest.upload.started"])
    with pytest.raises(ServiceUnavailable):
        await bus.check()
    with pytest.raises(ServiceUnavailable):
        bus.subscribe(bus.topics.uploads)


async def test_a_closed_subscription_stops_receiving() -> None:
    bus = InProcessEventBus(Topics(), source=SOURCE)
    async with bus.subscribe(bus.topics.uploads) as subscription:
        assert bus.subscriber_count(bus.topics.uploads) == 1
    assert bus.subscriber_count(bus.topics.uploads) == 0
    await bus.emit(SAMPLES["ingest.upload.started"])
    assert [record async for record in subscription] == []
    with pytest.raises(ValueError, match="not a topic"):
        bus.subscribe("ingest.nope")
