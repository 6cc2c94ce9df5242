"""`ObjectStore`, `ResumableObjectStore` and `MultipartUpload` in memory: `MemoryObjectStore`.

S3's behaviour the contract suite checks (part checksums verified, unknown or
aborted uploads refused, the same error types and `details`; an upload opened
as earlier versions did keeps a SHA-256 per part), with knobs to inject
failures or slowness per part.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from ingest.adapters.local_failures import LocalFailures
from ingest.errors import ServiceUnavailable
from ingest.pipeline.hashing import part_checksum
from ingest.ports import STARTED_PART_CHECKSUM, PartChecksum, StoredObject, StoredPart

if TYPE_CHECKING:
    from ingest.ports import MultipartUpload, ObjectStore, ResumableObjectStore


MAX_PART_NUMBER = 10_000
S3_MIN_PART_SIZE = 5 * 1024 * 1024
"""What real S3 demands of every part but the last; pass it as `min_part_size` to enforce it."""


def _sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def _quoted_md5(data: bytes) -> str:
    return f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"'


UploadState = Literal["open", "completed", "aborted"]


class MemoryMultipartUpload:
    """One multipart upload of a `MemoryObjectStore`; inspect `state` and `parts`."""

    def __init__(
        self,
        store: MemoryObjectStore,
        key: str,
        upload_id: str,
        content_type: str | None,
        metadata: Mapping[str, str],
        part_checksum: PartChecksum = STARTED_PART_CHECKSUM,
    ) -> None:
        self._store = store
        self._key = key
        self._upload_id = upload_id
        self.content_type = content_type
        self.metadata = dict(metadata)
        self.part_checksum = part_checksum
        """What its parts carry: SHA256 for an upload opened as earlier versions did."""
        self.state: UploadState = "open"
        self.parts: dict[int, tuple[StoredPart, bytes]] = {}
        """Parts held now, by number: cleared by abort, as S3 frees them."""
        self.part_attempts: list[int] = []
        """Part numbers in the order `upload_part` was called."""
        self.completed_parts: list[StoredPart] = []
        self.abort_calls = 0

    @property
    def key(self) -> str:
        return self._key

    @property
    def upload_id(self) -> str:
        return self._upload_id

    @property
    def part_sizes(self) -> list[int]:
        """Sizes of the parts held, by part number."""
        return [self.parts[n][0].size for n in sorted(self.parts)]

    async def upload_part(self, number: int, data: bytes, crc32c_b64: str) -> StoredPart:
        self.part_attempts.append(number)
        self._require_open("upload_part")
        store = self._store
        if not 1 <= number <= MAX_PART_NUMBER:
            raise store.failures.refused(
                "upload_part", self._key, "InvalidArgument", f"part number {number} is not 1-10000"
            )
        store._part_started(len(data))
        try:
            if store.on_part is not None:
                store.on_part(self, number, data)
            if store.gate is not None:
                await store.gate.wait()
            if store.part_delay:
                await asyncio.sleep(store.part_delay)
            failure = store.fail_parts.get(number)
            if failure is not None:
                raise failure
            if part_checksum(data) != crc32c_b64:
                raise store.failures.checksum(
                    "upload_part",
                    self._key,
                    f"part {number}: the data's CRC32C is not {crc32c_b64}",
                )
            # An abort that lands while the part is in transit wins: nothing is kept.
            self._require_open("upload_part")
        finally:
            store._part_finished(len(data))
        if self.part_checksum == "SHA256":
            part = StoredPart(
                number=number,
                etag=_quoted_md5(data),
                size=len(data),
                crc32c_b64="",
                sha256_b64=_sha256_b64(data),
            )
        else:
            part = StoredPart(
                number=number, etag=_quoted_md5(data), size=len(data), crc32c_b64=crc32c_b64
            )
        self.parts[number] = (part, bytes(data))
        return part

    async def copy_part(
        self, number: int, source_key: str, byte_range: tuple[int, int] | None = None
    ) -> StoredPart:
        """Like S3's UploadPartCopy: `gate` and `fail_parts` apply; the part keeps no SHA-256."""
        self.part_attempts.append(number)
        self._require_open("upload_part_copy")
        store = self._store
        source = store.objects.get(source_key)
        if source is None:
            raise store.failures.missing_key("upload_part_copy", source_key)
        start, end = byte_range if byte_range is not None else (0, len(source))
        if not 0 <= start < end <= len(source):
            raise store.failures.refused(
                "upload_part_copy", source_key, "InvalidRange", f"{byte_range} is out of range"
            )
        if store.gate is not None:
            await store.gate.wait()
        failure = store.fail_parts.get(number)
        if failure is not None:
            raise failure
        self._require_open("upload_part_copy")
        store.copied_bytes += end - start
        data = source[start:end]
        part = StoredPart(number=number, etag=_quoted_md5(data), size=len(data), crc32c_b64="")
        self.parts[number] = (part, data)
        return part

    async def complete(self, parts: Sequence[StoredPart]) -> StoredObject:
        store = self._store
        fail, operation = store.failures, "complete_multipart_upload"
        if store.fail_complete is not None:
            raise store.fail_complete
        self._require_open(operation)
        # Any order, like the adapters, which sort the list S3 wants ascending.
        ordered = sorted(parts, key=lambda part: part.number)
        if not ordered:
            raise fail.refused(operation, self._key, "MalformedXML", "no parts were listed")
        if len({part.number for part in ordered}) != len(ordered):
            raise fail.refused(
                operation, self._key, "InvalidPartOrder", "a part number is listed twice"
            )
        chunks: list[bytes] = []
        for index, part in enumerate(ordered):
            held = self.parts.get(part.number)
            if held is None or held[0].etag != part.etag:
                raise fail.refused(
                    operation,
                    self._key,
                    "InvalidPart",
                    f"part {part.number} was not stored with this ETag",
                )
            listed = (part.crc32c_b64, part.sha256_b64)
            if (held[0].crc32c_b64, held[0].sha256_b64) != listed:
                raise fail.checksum(
                    operation, self._key, f"part {part.number}: the checksum is not the one listed"
                )
            if index < len(ordered) - 1 and held[0].size < store.min_part_size:
                raise fail.refused(
                    operation,
                    self._key,
                    "EntityTooSmall",
                    f"part {part.number} is under the minimum {store.min_part_size}",
                )
            chunks.append(held[1])
        data = b"".join(chunks)
        digests = b"".join(hashlib.md5(c, usedforsecurity=False).digest() for c in chunks)
        etag = f'"{hashlib.md5(digests, usedforsecurity=False).hexdigest()}-{len(chunks)}"'
        store.objects[self._key] = data
        store.object_info[self._key] = StoredObjectInfo(
            content_type=self.content_type, metadata=dict(self.metadata), etag=etag
        )
        self.state = "completed"
        self.completed_parts = list(parts)
        return StoredObject(key=self._key, etag=etag, size=len(data))

    async def abort(self) -> None:
        self.abort_calls += 1
        store = self._store
        if store.abort_delay:
            await asyncio.sleep(store.abort_delay)
        if store.fail_abort is not None:
            raise store.fail_abort
        # Like the S3 adapter: aborting twice, or after completion, changes nothing.
        if self.state == "open":
            self.state = "aborted"
            self.parts.clear()

    def _require_open(self, operation: str) -> None:
        if self.state != "open":
            raise self._store.failures.missing_upload(operation, self._key, self._upload_id)

    def __repr__(self) -> str:
        return f"<MemoryMultipartUpload {self._key} {self.state}, {len(self.parts)} parts>"


@dataclass(frozen=True)
class StoredObjectInfo:
    content_type: str | None
    metadata: dict[str, str]
    etag: str


class MemoryObjectStore:
    """An in-memory S3 bucket holding multipart uploads and completed objects.

    Knobs (plain attributes, change them at any time):
    `fail_start`, `fail_complete`, `fail_abort`, `fail_put`: raised by that call;
    `fail_parts[n]`: raised by every upload of part n;
    `part_delay`, `abort_delay`: seconds each such call takes;
    `gate`: when set to an asyncio.Event, part uploads wait for it;
    `on_part(upload, number, data)`: called as each part upload starts;
    `min_part_size`: smallest part allowed but the last (S3: `S3_MIN_PART_SIZE`);
    `healthy`: `check()` raises ServiceUnavailable when False;
    `fail_small`: raised by `put_small` and `get_small`; `read_chunk`: chunk size of `read_object`.

    Records: `objects` (key -> bytes), `object_info`, `uploads` (every multipart
    upload, in start order), `resumed` ((upload id, `part_checksum`) of every
    `resume_multipart` call), `put_attempts` (keys of whole-object puts), and the
    concurrency seen by part uploads and puts:
    `max_parts_in_flight`, `max_bytes_in_flight`.
    """

    def __init__(
        self,
        bucket: str = "test-bucket",
        *,
        min_part_size: int = 0,
        part_delay: float = 0.0,
    ) -> None:
        self._bucket = bucket
        self.failures = LocalFailures(bucket)
        """Builds the errors, typed and with `details` like the adapters'."""
        self._ids = itertools.count(1)
        self.min_part_size = min_part_size
        self.part_delay = part_delay
        self.abort_delay = 0.0
        self.fail_start: Exception | None = None
        self.fail_parts: dict[int, Exception] = {}
        self.fail_complete: Exception | None = None
        self.fail_put: Exception | None = None
        self.put_attempts: list[str] = []
        self.fail_abort: Exception | None = None
        self.gate: asyncio.Event | None = None
        self.on_part: Callable[[MemoryMultipartUpload, int, bytes], None] | None = None
        self.fail_small: Exception | None = None
        self.read_chunk = 64 * 1024
        self.objects_read: list[str] = []
        self.small_bytes_written = 0
        """Bytes `put_small` stored, rewrites included: the write amplification of tails."""
        """Keys `read_object` was asked for, in order."""
        self.copied_bytes = 0
        """Bytes `copy_part` copied inside the store (none went through the caller)."""
        self.healthy = True
        self.objects: dict[str, bytes] = {}
        self.object_info: dict[str, StoredObjectInfo] = {}
        self.uploads: list[MemoryMultipartUpload] = []
        self.resumed: list[tuple[str, PartChecksum | None]] = []
        self.parts_in_flight = 0
        self.max_parts_in_flight = 0
        self.bytes_in_flight = 0
        self.max_bytes_in_flight = 0

    @property
    def bucket(self) -> str:
        return self._bucket

    @property
    def open_uploads(self) -> list[MemoryMultipartUpload]:
        return [u for u in self.uploads if u.state == "open"]

    @property
    def aborted_uploads(self) -> list[MemoryMultipartUpload]:
        return [u for u in self.uploads if u.state == "aborted"]

    @property
    def completed_uploads(self) -> list[MemoryMultipartUpload]:
        return [u for u in self.uploads if u.state == "completed"]

    def parts_held(self) -> int:
        """Parts stored in uploads that are not completed: what a failed upload must leave at 0."""
        return sum(len(u.parts) for u in self.uploads if u.state != "completed")

    async def start_multipart(
        self,
        key: str,
        *,
        content_type: str | None,
        metadata: Mapping[str, str],
        part_checksum: PartChecksum = STARTED_PART_CHECKSUM,
    ) -> MemoryMultipartUpload:
        """`part_checksum="SHA256"`: an upload as earlier versions opened them."""
        if self.fail_start is not None:
            raise self.fail_start
        upload_id = f"mpu-{next(self._ids)}"
        upload = MemoryMultipartUpload(self, key, upload_id, content_type, metadata, part_checksum)
        self.uploads.append(upload)
        return upload

    async def start_copy_multipart(
        self, key: str, *, content_type: str | None, metadata: Mapping[str, str]
    ) -> MemoryMultipartUpload:
        """The same upload: copied parts simply carry no SHA-256 to check."""
        return await self.start_multipart(key, content_type=content_type, metadata=metadata)

    async def put_object(
        self,
        key: str,
        data: bytes,
        sha256_b64: str,
        *,
        content_type: str | None,
        metadata: Mapping[str, str],
    ) -> StoredObject:
        """A whole object in one request: `gate`, `part_delay` and `fail_put` apply."""
        self.put_attempts.append(key)
        self._part_started(len(data))
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.part_delay:
                await asyncio.sleep(self.part_delay)
            if self.fail_put is not None:
                raise self.fail_put
            if _sha256_b64(data) != sha256_b64:
                raise self.failures.checksum(
                    "put_object", key, f"the data's SHA-256 is not {sha256_b64}"
                )
        finally:
            self._part_finished(len(data))
        etag = _quoted_md5(data)
        self.objects[key] = bytes(data)
        self.object_info[key] = StoredObjectInfo(
            content_type=content_type, metadata=dict(metadata), etag=etag
        )
        return StoredObject(key=key, etag=etag, size=len(data))

    async def incomplete_uploads(self, key: str) -> list[str]:
        return [u.upload_id for u in self.open_uploads if u.key == key]

    async def check(self) -> None:
        if not self.healthy:
            raise ServiceUnavailable(f"bucket {self._bucket} does not answer")

    # ResumableObjectStore: small objects live in `objects` like completed ones.

    def resume_multipart(
        self, key: str, upload_id: str, part_checksum: PartChecksum | None = None
    ) -> MemoryMultipartUpload:
        """The upload itself: its parts carry what it was opened with (`part_checksum` is
        only recorded, in `resumed`)."""
        self.resumed.append((upload_id, part_checksum))
        return self._upload(key, upload_id)

    async def stored_parts(self, key: str, upload_id: str) -> list[StoredPart]:
        upload = self._upload(key, upload_id)
        upload._require_open("list_parts")
        return [upload.parts[number][0] for number in sorted(upload.parts)]

    async def put_small(self, key: str, data: bytes) -> None:
        if self.fail_small is not None:
            raise self.fail_small
        self.small_bytes_written += len(data)
        self.objects[key] = bytes(data)

    async def get_small(self, key: str) -> bytes | None:
        if self.fail_small is not None:
            raise self.fail_small
        return self.objects.get(key)

    async def stored_size(self, key: str) -> int | None:
        data = self.objects.get(key)
        return None if data is None else len(data)

    async def delete(self, key: str) -> None:
        self.objects.pop(key, None)
        self.object_info.pop(key, None)

    async def read_object(self, key: str) -> AsyncIterator[bytes]:
        self.objects_read.append(key)
        data = self.objects.get(key)
        if data is None:
            raise self.failures.missing_key("get_object", key)
        for at in range(0, max(len(data), 1), self.read_chunk):
            yield data[at : at + self.read_chunk]

    def _upload(self, key: str, upload_id: str) -> MemoryMultipartUpload:
        for upload in self.uploads:
            if upload.upload_id == upload_id and upload.key == key:
                return upload
        # Like S3: the handle exists, every call on it fails.
        gone = MemoryMultipartUpload(self, key, upload_id, None, {})
        gone.state = "aborted"
        return gone

    def _part_started(self, size: int) -> None:
        self.parts_in_flight += 1
        self.bytes_in_flight += size
        self.max_parts_in_flight = max(self.max_parts_in_flight, self.parts_in_flight)
        self.max_bytes_in_flight = max(self.max_bytes_in_flight, self.bytes_in_flight)

    def _part_finished(self, size: int) -> None:
        self.parts_in_flight -= 1
        self.bytes_in_flight -= size


if TYPE_CHECKING:
    # mypy proves the fake still satisfies its port when the port changes.
    _object_store: ObjectStore = MemoryObjectStore()
    _resumable: ResumableObjectStore = MemoryObjectStore()
    _multipart: MultipartUpload = MemoryMultipartUpload(MemoryObjectStore(), "k", "u", None, {})
