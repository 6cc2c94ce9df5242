"""S3ObjectStore and S3DocumentStore against a real S3 server (MinIO)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import random
from collections.abc import AsyncIterator
from typing import Any

import crc32c
import pytest

from infra.checksums import composite_crc32c, composite_sha256, crc32c_b64
from infra.s3 import S3Endpoint, open_s3_client, s3_client_config
from ingest.adapters.s3_documents import S3DocumentStore
from ingest.adapters.s3_store import S3ObjectStore
from ingest.errors import (
    ChecksumMismatch,
    MultipartUploadMissing,
    ServiceUnavailable,
    StorageError,
    VersionConflict,
)
from ingest.ports import STARTED_PART_CHECKSUM
from ingest.settings import IngestSettings

MiB = 1024 * 1024


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


class Calls:
    """Records what the stores report to their observer."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, float, bool]] = []

    def __call__(self, operation: str, seconds: float, ok: bool) -> None:
        self.seen.append((operation, seconds, ok))

    def outcomes(self, operation: str) -> list[bool]:
        return [ok for name, _, ok in self.seen if name == operation]


@pytest.fixture
async def client(settings: IngestSettings) -> AsyncIterator[Any]:
    async with open_s3_client(settings.s3_endpoint()) as s3:
        yield s3


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def store(client: Any, settings: IngestSettings, calls: Calls) -> S3ObjectStore:
    return S3ObjectStore(client, settings.s3_bucket, observer=calls)


@pytest.fixture
def documents(
    client: Any, settings: IngestSettings, request: pytest.FixtureRequest
) -> S3DocumentStore:
    # A prefix per test, so tests never see each other's documents.
    return S3DocumentStore(client, settings.s3_bucket, prefix=f"_sessions-{request.node.name}/")


async def read_object(client: Any, bucket: str, key: str) -> bytes:
    response = await client.get_object(Bucket=bucket, Key=key)
    async with response["Body"] as body:
        data: bytes = await body.read()
    return data


# --- multipart uploads ----------------------------------------------------------------


async def test_three_parts_uploaded_out_of_order_complete_to_the_same_bytes(
    store: S3ObjectStore, client: Any, settings: IngestSettings, calls: Calls
) -> None:
    rng = random.Random(11)
    bodies = [rng.randbytes(5 * MiB), rng.randbytes(5 * MiB), rng.randbytes(MiB + 17)]
    key = "uploads/three-parts.mp4"
    upload = await store.start_multipart(key, content_type="video/mp4", metadata={"user": "u-1"})
    assert upload.key == key
    assert await store.incomplete_uploads(key) == [upload.upload_id]

    stored = await asyncio.gather(
        *(
            upload.upload_part(number, body, crc32c_b64(body))
            for number, body in reversed(list(enumerate(bodies, start=1)))
        )
    )
    assert [part.number for part in stored] == [3, 2, 1]
    assert [part.size for part in stored] == [MiB + 17, 5 * MiB, 5 * MiB]
    result = await upload.complete(stored)

    assert result.key == key
    assert result.size == 11 * MiB + 17
    assert result.etag is not None
    assert result.etag.endswith('-3"')
    data = await read_object(client, settings.s3_bucket, key)
    assert hashlib.sha256(data).digest() == hashlib.sha256(b"".join(bodies)).digest()
    head = await client.head_object(Bucket=settings.s3_bucket, Key=key)
    assert head["ContentType"] == "video/mp4"
    assert head["Metadata"] == {"user": "u-1"}
    assert await store.incomplete_uploads(key) == []
    assert calls.outcomes("upload_part") == [True, True, True]
    assert calls.outcomes("complete_multipart_upload") == [True]
    assert all(seconds >= 0 for _, seconds, _ in calls.seen)


async def test_a_part_is_sent_as_the_callers_bytes_without_a_copy(
    store: S3ObjectStore, client: Any
) -> None:
    sent: list[object] = []

    def capture(request: Any, **_: Any) -> None:
        sent.append(request.body)

    client.meta.events.register("before-send.s3.UploadPart", capture)
    body = random.Random(3).randbytes(5 * MiB)
    upload = await store.start_multipart("uploads/no-copy.bin", content_type=None, metadata={})
    try:
        await upload.upload_part(1, body, crc32c_b64(body))
    finally:
        client.meta.events.unregister("before-send.s3.UploadPart", capture)
        await upload.abort()
    assert len(sent) == 1
    assert sent[0] is body


async def test_a_whole_object_is_sent_as_the_callers_bytes_without_a_copy(
    store: S3ObjectStore, client: Any, settings: IngestSettings
) -> None:
    sent: list[object] = []

    def capture(request: Any, **_: Any) -> None:
        sent.append(request.body)

    client.meta.events.register("before-send.s3.PutObject", capture)
    body = random.Random(4).randbytes(3 * MiB)
    try:
        stored = await store.put_object(
            "uploads/no-copy-whole.bin", body, sha256_b64(body), content_type=None, metadata={}
        )
    finally:
        client.meta.events.unregister("before-send.s3.PutObject", capture)
    assert len(sent) == 1
    assert sent[0] is body
    head = await client.head_object(
        Bucket=settings.s3_bucket, Key=stored.key, ChecksumMode="ENABLED"
    )
    assert head["ContentLength"] == len(body)
    assert head["ChecksumSHA256"] == sha256_b64(body)


async def test_a_part_with_a_wrong_checksum_raises_checksum_mismatch(
    store: S3ObjectStore, calls: Calls
) -> None:
    key = "uploads/wrong-checksum.mp4"
    upload = await store.start_multipart(key, content_type="video/mp4", metadata={})
    body = random.Random(5).randbytes(MiB)
    try:
        with pytest.raises(ChecksumMismatch) as refused:
            await upload.upload_part(1, body, crc32c_b64(body + b"tampered"))
        assert refused.value.details["operation"] == "upload_part"
        assert refused.value.details["key"] == key
        assert refused.value.details["code"] in {
            "BadDigest",
            "XAmzContentChecksumMismatch",
            "InvalidDigest",
        }
        assert key in refused.value.message
        assert calls.outcomes("upload_part") == [False]
    finally:
        await upload.abort()
    assert await store.incomplete_uploads(key) == []


async def test_abort_leaves_no_upload_and_may_be_repeated(store: S3ObjectStore) -> None:
    key = "uploads/aborted.mp4"
    other = await store.start_multipart(key + ".other", content_type=None, metadata={})
    upload = await store.start_multipart(key, content_type="video/mp4", metadata={})
    body = random.Random(6).randbytes(MiB)
    await upload.upload_part(1, body, crc32c_b64(body))
    assert await store.incomplete_uploads(key) == [upload.upload_id]

    await upload.abort()
    assert await store.incomplete_uploads(key) == []
    await upload.abort()
    assert await store.incomplete_uploads(key) == []

    assert await store.incomplete_uploads(key + ".other") == [other.upload_id]
    await other.abort()


async def test_completing_an_aborted_upload_is_a_storage_error(store: S3ObjectStore) -> None:
    key = "uploads/complete-after-abort.mp4"
    upload = await store.start_multipart(key, content_type=None, metadata={})
    body = random.Random(9).randbytes(MiB)
    part = await upload.upload_part(1, body, crc32c_b64(body))
    await upload.abort()
    with pytest.raises(MultipartUploadMissing) as failed:
        await upload.complete([part])
    assert failed.value.details["code"] == "NoSuchUpload"
    assert failed.value.retriable is False
    assert "complete_multipart_upload" in failed.value.message


async def test_an_earlier_versions_upload_is_asked_about_once_and_takes_sha256_parts(
    store: S3ObjectStore, client: Any, settings: IngestSettings, calls: Calls
) -> None:
    """Resumed without a record of what its parts carry, the handle asks S3 once (ListParts)
    for every part in flight, sends each with its SHA-256, and completes the upload."""
    bucket, key = settings.s3_bucket, "uploads/earlier-sha256.mp4"
    rng = random.Random(12)
    bodies = [rng.randbytes(5 * MiB), rng.randbytes(5 * MiB), rng.randbytes(5 * MiB), b"end"]
    created = await client.create_multipart_upload(
        Bucket=bucket, Key=key, ChecksumAlgorithm="SHA256"
    )
    upload_id = created["UploadId"]
    await client.upload_part(
        Bucket=bucket,
        Key=key,
        UploadId=upload_id,
        PartNumber=1,
        Body=bodies[0],
        ChecksumAlgorithm="SHA256",
        ChecksumSHA256=sha256_b64(bodies[0]),
    )

    resumed = store.resume_multipart(key, upload_id)
    sent = await asyncio.gather(
        *(
            resumed.upload_part(number, body, crc32c_b64(body))
            for number, body in enumerate(bodies[1:], start=2)
        )
    )

    assert calls.outcomes("list_parts") == [True]
    assert [part.sha256_b64 for part in sent] == [sha256_b64(body) for body in bodies[1:]]
    held = await store.stored_parts(key, upload_id)
    assert held[1:] == sent
    result = await store.resume_multipart(key, upload_id).complete(held)
    assert result.size == sum(len(body) for body in bodies)
    assert await read_object(client, bucket, key) == b"".join(bodies)
    head = await client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == composite_sha256(sha256_b64(body) for body in bodies)


async def test_an_upload_resumed_with_its_recorded_checksum_asks_s3_nothing_more(
    store: S3ObjectStore, calls: Calls
) -> None:
    key = "uploads/recorded-crc32c.mp4"
    started = await store.start_multipart(key, content_type=None, metadata={})
    body = random.Random(13).randbytes(MiB)
    try:
        resumed = store.resume_multipart(key, started.upload_id, STARTED_PART_CHECKSUM)
        part = await resumed.upload_part(1, body, crc32c_b64(body))
        assert part.crc32c_b64 == crc32c_b64(body)
        assert [name for name, _, _ in calls.seen] == ["create_multipart_upload", "upload_part"]
    finally:
        await started.abort()


async def test_a_part_not_of_its_crc32c_is_refused_before_it_is_sent_as_sha256(
    store: S3ObjectStore, client: Any, settings: IngestSettings, calls: Calls
) -> None:
    key = "uploads/earlier-refused.mp4"
    created = await client.create_multipart_upload(
        Bucket=settings.s3_bucket, Key=key, ChecksumAlgorithm="SHA256"
    )
    resumed = store.resume_multipart(key, created["UploadId"], "SHA256")
    try:
        with pytest.raises(ChecksumMismatch):
            await resumed.upload_part(1, b"some bytes", crc32c_b64(b"other bytes"))
        assert calls.outcomes("upload_part") == []
    finally:
        await resumed.abort()


def test_composite_checksum_is_the_crc32c_of_the_part_crc32cs() -> None:
    bodies = [b"a" * 10, b"b" * 20]
    checksums = [crc32c_b64(body) for body in bodies]
    joined = b"".join(crc32c.crc32c(body).to_bytes(4, "big") for body in bodies)
    expected = base64.b64encode(crc32c.crc32c(joined).to_bytes(4, "big")).decode()
    assert composite_crc32c(checksums) == expected + "-2"


async def test_check_answers_for_the_bucket_and_refuses_a_missing_one(
    store: S3ObjectStore, client: Any
) -> None:
    await store.check()
    with pytest.raises(ServiceUnavailable):
        await S3ObjectStore(client, "no-such-bucket-for-ingest-tests").check()


async def test_an_unreachable_s3_is_a_retriable_storage_error(settings: IngestSettings) -> None:
    endpoint = S3Endpoint(
        endpoint_url="http://127.0.0.1:1",
        region=settings.aws_region,
        access_key_id=settings.aws_access_key_id,
        secret_access_key=settings.aws_secret_access_key,
    )
    calls = Calls()
    config = s3_client_config(path_style=True, max_attempts=2, connect_timeout=2)
    opened = S3ObjectStore.open(endpoint, "any", observer=calls, config=config, check_timeout=2)
    async with asyncio.timeout(20), opened as store:
        with pytest.raises(StorageError) as failed:
            await store.start_multipart("k", content_type=None, metadata={})
        with pytest.raises(ServiceUnavailable):
            await store.check()
    assert failed.value.retriable is True
    assert failed.value.details["operation"] == "create_multipart_upload"
    assert settings.aws_secret_access_key
    assert settings.aws_secret_access_key not in failed.value.message
    assert calls.outcomes("create_multipart_upload") == [False]


# --- documents ------------------------------------------------------------------------


async def test_documents_are_created_read_and_replaced_by_version(
    documents: S3DocumentStore,
) -> None:
    assert await documents.read("s-1") is None
    first = await documents.create("s-1", b'{"status": "active"}')

    read = await documents.read("s-1")
    assert read is not None
    assert read.data == b'{"status": "active"}'
    assert read.version == first

    with pytest.raises(VersionConflict):
        await documents.create("s-1", b'{"status": "other"}')

    second = await documents.replace("s-1", b'{"status": "uploading"}', version=first)
    assert second != first
    with pytest.raises(VersionConflict):
        await documents.replace("s-1", b'{"status": "failed"}', version=first)
    with pytest.raises(VersionConflict):
        await documents.replace("never-created", b"{}", version=second)

    final = await documents.read("s-1")
    assert final is not None
    assert (final.data, final.version) == (b'{"status": "uploading"}', second)


async def test_of_concurrent_replaces_of_one_version_exactly_one_wins(
    documents: S3DocumentStore,
) -> None:
    version = await documents.create("raced", b'{"owner": null}')

    async def replace(writer: int) -> str | None:
        try:
            return await documents.replace("raced", b'{"owner": %d}' % writer, version=version)
        except VersionConflict:
            return None

    results = await asyncio.gather(*(replace(writer) for writer in range(8)))
    winners = [writer for writer, result in enumerate(results) if result is not None]
    assert len(winners) == 1
    stored = await documents.read("raced")
    assert stored is not None
    assert stored.data == b'{"owner": %d}' % winners[0]
    assert stored.version == results[winners[0]]


async def test_of_concurrent_creates_of_one_key_exactly_one_wins(
    documents: S3DocumentStore,
) -> None:
    async def create(writer: int) -> str | None:
        try:
            return await documents.create("created", b'{"by": %d}' % writer)
        except VersionConflict:
            return None

    results = await asyncio.gather(*(create(writer) for writer in range(8)))
    assert sum(result is not None for result in results) == 1


async def test_list_keys_pages_through_every_document_under_a_prefix(
    client: Any, settings: IngestSettings
) -> None:
    documents = S3DocumentStore(client, settings.s3_bucket, prefix="_paged/", page_size=2)
    for name in ["a/1", "a/2", "a/3", "a/4", "a/5", "b/1"]:
        await documents.create(name, b"{}")
    assert sorted(await documents.list_keys("a/")) == ["a/1", "a/2", "a/3", "a/4", "a/5"]
    assert await documents.list_keys("b/") == ["b/1"]
    assert await documents.list_keys("c/") == []
