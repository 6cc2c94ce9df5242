"""ObjectStore and MultipartUpload: the local-disk store and S3 (MinIO) answer alike."""

from __future__ import annotations

import asyncio
import hashlib
import random

import pytest

from infra.checksums import crc32c_b64, sha256_b64
from ingest.errors import ChecksumMismatch, MultipartUploadMissing, StorageError
from ingest.ports import (
    ObjectSizes,
    ObjectStore,
    PartChecksum,
    PartCopying,
    ResumableObjectStore,
    StoredPart,
)
from tests.contract.conftest import ObjectBackend

MiB = 1024 * 1024


def quoted_md5(data: bytes) -> str:
    return f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"'


def multipart_etag(bodies: list[bytes]) -> str:
    digests = b"".join(hashlib.md5(body, usedforsecurity=False).digest() for body in bodies)
    return f'"{hashlib.md5(digests, usedforsecurity=False).hexdigest()}-{len(bodies)}"'


async def test_three_parts_uploaded_out_of_order_complete_to_the_right_bytes(
    object_store: ObjectBackend,
) -> None:
    store = object_store.store
    rng = random.Random(11)
    bodies = [rng.randbytes(5 * MiB), rng.randbytes(5 * MiB), rng.randbytes(MiB + 17)]
    key = "uploads/user-1/three-parts.mp4"
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
    assert [part.etag for part in stored] == [quoted_md5(body) for body in reversed(bodies)]
    assert [part.crc32c_b64 for part in stored] == [crc32c_b64(b) for b in reversed(bodies)]

    result = await upload.complete(stored)

    assert result.key == key
    assert result.size == 11 * MiB + 17
    assert result.etag == multipart_etag(bodies)
    assert await object_store.read(key) == b"".join(bodies)
    assert await store.incomplete_uploads(key) == []


async def test_a_part_uploaded_again_replaces_the_earlier_one(
    object_store: ObjectBackend,
) -> None:
    store = object_store.store
    key = "uploads/user-1/retried-part.bin"
    upload = await store.start_multipart(key, content_type=None, metadata={})
    first, second = b"first attempt", b"second attempt, longer"
    await upload.upload_part(1, first, crc32c_b64(first))
    part = await upload.upload_part(1, second, crc32c_b64(second))

    result = await upload.complete([part])

    assert result.size == len(second)
    assert await object_store.read(key) == second


async def test_a_part_with_a_wrong_checksum_is_refused_and_not_kept(
    object_store: ObjectBackend,
) -> None:
    store = object_store.store
    key = "uploads/user-1/wrong-checksum.mp4"
    upload = await store.start_multipart(key, content_type="video/mp4", metadata={})
    body = random.Random(5).randbytes(MiB)
    try:
        with pytest.raises(ChecksumMismatch) as refused:
            await upload.upload_part(1, body, crc32c_b64(body + b"tampered"))
        assert refused.value.details["key"] == key
        assert refused.value.details["operation"] == "upload_part"
        assert refused.value.retriable is False

        # What S3 would have kept is the part with these digests: there is none.
        phantom = StoredPart(1, quoted_md5(body), len(body), crc32c_b64(body))
        with pytest.raises(StorageError) as missing:
            await upload.complete([phantom])
        assert missing.value.details["code"] == "InvalidPart"
        assert await store.incomplete_uploads(key) == [upload.upload_id]
    finally:
        await upload.abort()
    assert await store.incomplete_uploads(key) == []


async def test_a_whole_object_is_put_in_one_request_and_verified(
    object_store: ObjectBackend,
) -> None:
    store = object_store.store
    key = "uploads/user-1/whole.mp4"
    body = random.Random(8).randbytes(3 * MiB + 5)

    with pytest.raises(ChecksumMismatch) as refused:
        await store.put_object(
            key, body, sha256_b64(body + b"tampered"), content_type="video/mp4", metadata={}
        )
    assert refused.value.details["key"] == key
    assert refused.value.details["operation"] == "put_object"
    assert await store.incomplete_uploads(key) == []

    stored = await store.put_object(
        key, body, sha256_b64(body), content_type="video/mp4", metadata={"user-id": "user-1"}
    )
    assert (stored.key, stored.size, stored.etag) == (key, len(body), quoted_md5(body))
    assert await object_store.read(key) == body
    assert await store.incomplete_uploads(key) == []
    assert isinstance(store, ObjectSizes)
    assert await store.stored_size(key) == len(body)

    await store.delete(key)
    await store.delete(key)  # gone already: no error
    assert await resumable(store).get_small(key) is None
    assert await store.stored_size(key) is None
    assert await store.stored_size("uploads/never-stored") is None


async def test_abort_leaves_no_incomplete_upload_and_may_be_repeated(
    object_store: ObjectBackend,
) -> None:
    store = object_store.store
    key = "uploads/user-1/aborted.mp4"
    upload = await store.start_multipart(key, content_type="video/mp4", metadata={})
    body = random.Random(6).randbytes(MiB)
    part = await upload.upload_part(1, body, crc32c_b64(body))
    assert await store.incomplete_uploads(key) == [upload.upload_id]

    await upload.abort()
    assert await store.incomplete_uploads(key) == []
    await upload.abort()
    assert await store.incomplete_uploads(key) == []

    with pytest.raises(MultipartUploadMissing) as completed:
        await upload.complete([part])
    assert completed.value.details["code"] == "NoSuchUpload"
    assert completed.value.retriable is False
    with pytest.raises(MultipartUploadMissing) as uploaded:
        await upload.upload_part(2, body, crc32c_b64(body))
    assert uploaded.value.details["code"] == "NoSuchUpload"


async def test_incomplete_uploads_lists_exactly_the_key_asked_for(
    object_store: ObjectBackend,
) -> None:
    store = object_store.store
    key = "uploads/user-2/clip.mp4"
    first = await store.start_multipart(key, content_type=None, metadata={})
    second = await store.start_multipart(key, content_type=None, metadata={})
    longer = await store.start_multipart(key + ".other", content_type=None, metadata={})
    below = await store.start_multipart(key + "/below", content_type=None, metadata={})
    try:
        assert sorted(await store.incomplete_uploads(key)) == sorted(
            [first.upload_id, second.upload_id]
        )
        assert await store.incomplete_uploads(key + ".other") == [longer.upload_id]
        assert await store.incomplete_uploads("uploads/user-2/clip") == []
        assert await store.incomplete_uploads("uploads/user-2/never.mp4") == []

        await first.abort()
        assert await store.incomplete_uploads(key) == [second.upload_id]
    finally:
        for upload in (first, second, longer, below):
            await upload.abort()
    assert await store.incomplete_uploads(key) == []


async def test_a_part_under_the_minimum_size_is_refused_unless_it_is_the_last(
    object_store: ObjectBackend,
) -> None:
    store = object_store.store
    key = "uploads/user-1/small-parts.bin"
    upload = await store.start_multipart(key, content_type=None, metadata={})
    small, last = b"s" * 1024, b"l" * 10
    try:
        parts = [
            await upload.upload_part(1, small, crc32c_b64(small)),
            await upload.upload_part(2, last, crc32c_b64(last)),
        ]
        with pytest.raises(StorageError) as refused:
            await upload.complete(parts)
        assert refused.value.details["code"] == "EntityTooSmall"
        # A refused complete leaves the upload open, to be aborted.
        assert await store.incomplete_uploads(key) == [upload.upload_id]
    finally:
        await upload.abort()


async def test_completing_with_a_part_etag_that_was_not_stored_fails(
    object_store: ObjectBackend,
) -> None:
    store = object_store.store
    key = "uploads/user-1/wrong-etag.bin"
    upload = await store.start_multipart(key, content_type=None, metadata={})
    body = b"only part"
    try:
        part = await upload.upload_part(1, body, crc32c_b64(body))
        forged = StoredPart(part.number, quoted_md5(b"another body"), part.size, part.crc32c_b64)
        with pytest.raises(StorageError) as refused:
            await upload.complete([forged])
        assert refused.value.details["code"] == "InvalidPart"
    finally:
        await upload.abort()


async def test_check_answers(object_store: ObjectBackend) -> None:
    await object_store.store.check()


# --- the resumable capability (tus): every store under test must offer it ------------


def resumable(store: ObjectStore) -> ResumableObjectStore:
    """The store as a ResumableObjectStore; a store without the capability fails, never skips."""
    if not isinstance(store, ResumableObjectStore):
        pytest.fail(f"{type(store).__name__} does not offer ResumableObjectStore")
    return store


def test_every_store_offers_the_resumable_capability(object_store: ObjectBackend) -> None:
    resumable(object_store.store)


async def test_an_upload_is_resumed_by_id_and_lists_the_parts_it_holds(
    object_store: ObjectBackend,
) -> None:
    store = resumable(object_store.store)
    key = "tus/user-1/resumed.bin"
    started = await object_store.store.start_multipart(key, content_type=None, metadata={})
    rng = random.Random(21)
    first, last = rng.randbytes(5 * MiB), rng.randbytes(1000)
    second_part = await started.upload_part(2, last, crc32c_b64(last))
    first_part = await started.upload_part(1, first, crc32c_b64(first))

    assert await store.stored_parts(key, started.upload_id) == [first_part, second_part]
    resumed = store.resume_multipart(key, started.upload_id)
    assert (resumed.key, resumed.upload_id) == (key, started.upload_id)
    result = await resumed.complete(await store.stored_parts(key, started.upload_id))

    assert result.etag == multipart_etag([first, last])
    assert await object_store.read(key) == first + last
    with pytest.raises(MultipartUploadMissing):
        await store.stored_parts(key, started.upload_id)


@pytest.mark.parametrize("told", [True, False], ids=["recorded", "asked"])
@pytest.mark.parametrize("opened", ["now", "earlier"])
async def test_a_resumed_upload_takes_parts_with_the_checksum_it_was_opened_with(
    object_store: ObjectBackend, opened: str, told: bool
) -> None:
    """An upload opened now takes CRC32C parts; one an earlier version opened, SHA-256 ones.
    A handle resumed with what the upload was recorded to take, or with nothing (then the
    store finds out), stores the next part either way, and the upload completes."""
    store = resumable(object_store.store)
    key = f"tus/user-1/opened-{opened}.bin"
    rng = random.Random(31)
    first, last = rng.randbytes(5 * MiB), rng.randbytes(MiB + 5)
    carried: PartChecksum
    if opened == "now":
        started = await object_store.store.start_multipart(key, content_type=None, metadata={})
        await started.upload_part(1, first, crc32c_b64(first))
        upload_id, carried = started.upload_id, "CRC32C"
    else:
        upload_id, carried = await object_store.open_earlier(key, [first]), "SHA256"

    resumed = store.resume_multipart(key, upload_id, carried if told else None)
    part = await resumed.upload_part(2, last, crc32c_b64(last))

    if carried == "SHA256":
        assert (part.crc32c_b64, part.sha256_b64) == ("", sha256_b64(last))
    else:
        assert (part.crc32c_b64, part.sha256_b64) == (crc32c_b64(last), "")
    held = await store.stored_parts(key, upload_id)
    assert [p.number for p in held] == [1, 2]
    assert held[1] == part
    assert held[0].sha256_b64 == (sha256_b64(first) if carried == "SHA256" else "")
    result = await store.resume_multipart(key, upload_id).complete(held)
    assert result.size == len(first) + len(last)
    assert result.etag == multipart_etag([first, last])
    assert await object_store.read(key) == first + last
    assert await object_store.store.incomplete_uploads(key) == []


async def test_an_upload_opened_with_sha256_parts_refuses_a_part_with_a_wrong_crc32c(
    object_store: ObjectBackend,
) -> None:
    store = resumable(object_store.store)
    key = "tus/user-1/earlier-refused.bin"
    first, last = random.Random(32).randbytes(5 * MiB), b"the last part"
    upload_id = await object_store.open_earlier(key, [first])
    resumed = store.resume_multipart(key, upload_id)

    with pytest.raises(ChecksumMismatch):
        await resumed.upload_part(2, last, crc32c_b64(b"other bytes"))

    assert [p.number for p in await store.stored_parts(key, upload_id)] == [1]
    await resumed.abort()


async def test_small_objects_are_put_replaced_read_and_deleted(
    object_store: ObjectBackend,
) -> None:
    store = resumable(object_store.store)
    key = "tus/user-1/tails/1000"
    assert await store.get_small(key) is None
    await store.put_small(key, b"first tail")
    await store.put_small(key, b"second tail")
    assert await store.get_small(key) == b"second tail"
    assert b"".join([chunk async for chunk in store.read_object(key)]) == b"second tail"
    await object_store.store.delete(key)
    await object_store.store.delete(key)
    assert await store.get_small(key) is None


async def test_an_stored_size_is_read_without_its_bytes(object_store: ObjectBackend) -> None:
    store = resumable(object_store.store)
    key = "dashboard-uploads/user-1/u-9/clip.mp4"
    assert await store.stored_size(key) is None
    await store.put_small(key, b"x" * 1234)
    assert await store.stored_size(key) == 1234
    assert await store.stored_size("dashboard-uploads/user-1/u-9") is None, "a prefix is no object"
    await object_store.store.delete(key)
    assert await store.stored_size(key) is None


# --- the part-copying capability (tus concatenation) ----------------------------------


def copying(store: ObjectStore) -> PartCopying:
    """The store as a PartCopying store; a store without the capability fails, never skips."""
    if not isinstance(store, PartCopying):
        pytest.fail(f"{type(store).__name__} does not offer PartCopying")
    return store


async def _stored_by_parts(store: ObjectStore, key: str, body: bytes) -> None:
    """`body` stored the way a tus upload stores it: parts with a CRC32C each, completed."""
    upload = await store.start_multipart(key, content_type=None, metadata={})
    cut = min(len(body), 5 * MiB)
    pieces = [body[:cut], body[cut:]] if cut < len(body) else [body]
    parts = [
        await upload.upload_part(number, piece, crc32c_b64(piece))
        for number, piece in enumerate(pieces, start=1)
    ]
    await upload.complete(parts)


async def test_objects_stored_by_parts_are_joined_by_copying_without_their_bytes(
    object_store: ObjectBackend,
) -> None:
    store = object_store.store
    rng = random.Random(31)
    first, second, last = rng.randbytes(5 * MiB + 3), rng.randbytes(5 * MiB), rng.randbytes(999)
    sources = ["tus/partials/a", "tus/partials/b", "tus/partials/c"]
    for key, body in zip(sources, (first, second, last), strict=True):
        await _stored_by_parts(store, key, body)
    key = "uploads/user-1/joined.mp4"
    joined = await copying(store).start_copy_multipart(key, content_type="video/mp4", metadata={})

    parts = await asyncio.gather(
        *(joined.copy_part(number, source) for number, source in enumerate(sources, start=1))
    )

    assert [part.size for part in parts] == [5 * MiB + 3, 5 * MiB, 999]
    assert [part.etag for part in parts] == [quoted_md5(b) for b in (first, second, last)]
    result = await joined.complete(parts)
    assert result.size == 10 * MiB + 1002
    assert result.etag == multipart_etag([first, second, last])
    assert await object_store.read(key) == first + second + last
    assert await store.incomplete_uploads(key) == []


async def test_a_large_object_is_copied_in_ranges(object_store: ObjectBackend) -> None:
    store = object_store.store
    body = random.Random(32).randbytes(10 * MiB + 5)
    await _stored_by_parts(store, "tus/partials/large", body)
    key = "uploads/user-1/ranges.mp4"
    joined = await copying(store).start_copy_multipart(key, content_type=None, metadata={})
    ranges = [(0, 5 * MiB), (5 * MiB, 10 * MiB), (10 * MiB, 10 * MiB + 5)]

    parts = [
        await joined.copy_part(number, "tus/partials/large", byte_range)
        for number, byte_range in enumerate(ranges, start=1)
    ]

    assert [part.size for part in parts] == [5 * MiB, 5 * MiB, 5]
    await joined.complete(parts)
    assert await object_store.read(key) == body


async def test_copying_from_nothing_or_past_the_end_is_refused(
    object_store: ObjectBackend,
) -> None:
    store = object_store.store
    body = random.Random(33).randbytes(5 * MiB + 10)
    await _stored_by_parts(store, "tus/partials/short", body)
    joined = await copying(store).start_copy_multipart(
        "uploads/user-1/refused.mp4", content_type=None, metadata={}
    )
    with pytest.raises(StorageError) as missing:
        await joined.copy_part(1, "tus/partials/never-stored")
    assert not isinstance(missing.value, MultipartUploadMissing)
    with pytest.raises(StorageError):
        await joined.copy_part(1, "tus/partials/short", (5 * MiB, 5 * MiB + 11))

    await joined.abort()
    with pytest.raises(MultipartUploadMissing):
        await joined.copy_part(1, "tus/partials/short")
    assert await store.incomplete_uploads("uploads/user-1/refused.mp4") == []
