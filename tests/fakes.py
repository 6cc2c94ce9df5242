"""Hand-written in-memory implementations of the ports in `ingest.ports`, for tests.

These are working fakes, not mocks: each passes the contract suite the real
adapters pass (tests/contract: S3 verifies part checksums and refuses unknown
or aborted uploads, with the same error types and `details`; the document
store is compare-and-swap), keeps what it stored for assertions, and has a few
knobs to inject faults or slowness.
Everything is plain attributes: set a knob, run the code, read the record.
Also here: `ScriptedBody` (a request body that can fail, stall or go slowly),
`video_bytes` (bytes with a real container signature) and `upload_target`.

    store = MemoryObjectStore()
    store.fail_parts[2] = StorageError("S3 answered 503")
    sink = RecordingEventSink()
    ...
    assert store.uploads[0].state == "aborted"
    assert sink.types()[-1] == "ingest.upload.failed"
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import random
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import msgspec

from infra.feeds import TopicPartition
from ingest.adapters.local_failures import LocalFailures
from ingest.errors import (
    ServiceUnavailable,
    VersionConflict,
)
from ingest.model import UploadTarget
from ingest.pipeline.hashing import part_checksum
from ingest.ports import QuotaStatus, StoredObject, StoredPart, Versioned
from schemas import Event, UploadEvent, event_type
from schemas.periods import current_period, rfc3339

if TYPE_CHECKING:
    from infra.feeds import TopicReader
    from ingest.ports import (
        DocumentStore,
        EventSink,
        MultipartUpload,
        ObjectStore,
        QuotaView,
        ResumableObjectStore,
    )

E = TypeVar("E", bound=Event)

MAX_PART_NUMBER = 10_000
S3_MIN_PART_SIZE = 5 * 1024 * 1024
"""What real S3 demands of every part but the last; pass it as `min_part_size` to enforce it."""


def _sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def _quoted_md5(data: bytes) -> str:
    return f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"'


# Object storage.

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
    ) -> None:
        self._store = store
        self._key = key
        self._upload_id = upload_id
        self.content_type = content_type
        self.metadata = dict(metadata)
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
        part = StoredPart(
            number=number, etag=_quoted_md5(data), size=len(data), crc32c_b64=crc32c_b64
        )
        self.parts[number] = (part, bytes(data))
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
            if held[0].crc32c_b64 != part.crc32c_b64:
                raise fail.checksum(
                    operation, self._key, f"part {part.number}: the CRC32C is not the one listed"
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
    upload, in start order), `put_attempts` (keys of whole-object puts), and the
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
        self.healthy = True
        self.objects: dict[str, bytes] = {}
        self.object_info: dict[str, StoredObjectInfo] = {}
        self.uploads: list[MemoryMultipartUpload] = []
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
        self, key: str, *, content_type: str | None, metadata: Mapping[str, str]
    ) -> MemoryMultipartUpload:
        if self.fail_start is not None:
            raise self.fail_start
        upload = MemoryMultipartUpload(self, key, f"mpu-{next(self._ids)}", content_type, metadata)
        self.uploads.append(upload)
        return upload

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

    def resume_multipart(self, key: str, upload_id: str) -> MemoryMultipartUpload:
        for upload in self.uploads:
            if upload.upload_id == upload_id and upload.key == key:
                return upload
        # Like S3: the handle exists, every call on it fails.
        gone = MemoryMultipartUpload(self, key, upload_id, None, {})
        gone.state = "aborted"
        return gone

    async def stored_parts(self, key: str, upload_id: str) -> list[StoredPart]:
        upload = self.resume_multipart(key, upload_id)
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

    def _part_started(self, size: int) -> None:
        self.parts_in_flight += 1
        self.bytes_in_flight += size
        self.max_parts_in_flight = max(self.max_parts_in_flight, self.parts_in_flight)
        self.max_bytes_in_flight = max(self.max_bytes_in_flight, self.bytes_in_flight)

    def _part_finished(self, size: int) -> None:
        self.parts_in_flight -= 1
        self.bytes_in_flight -= size


# Events.


class RecordingEventSink:
    """An event bus that keeps every event it accepts, in order, in `events`.

    Knobs: `fail_with` (raised by `emit`, for every type or only `fail_types`),
    `delay` seconds per emit (for every type or only `delay_types`), `healthy`.
    Refused events go to `refused`; `attempts` counts every call.
    """

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.refused: list[Event] = []
        self.attempts = 0
        self.fail_with: Exception | None = None
        self.fail_types: tuple[type[Event], ...] = ()
        self.delay = 0.0
        self.delay_types: tuple[type[Event], ...] = ()
        self.healthy = True

    async def emit(self, event: Event) -> None:
        self.attempts += 1
        if self.delay and (not self.delay_types or isinstance(event, self.delay_types)):
            await asyncio.sleep(self.delay)
        if self.fail_with is not None and (
            not self.fail_types or isinstance(event, self.fail_types)
        ):
            self.refused.append(event)
            raise self.fail_with
        self.events.append(event)

    async def check(self) -> None:
        if not self.healthy:
            raise ServiceUnavailable("the event bus does not answer")

    def of_type(self, cls: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, cls)]

    def types(self) -> list[str]:
        """The CloudEvents type of every event, in order."""
        return [event_type(e) for e in self.events]

    def for_upload(self, upload_id: str) -> list[UploadEvent]:
        return [e for e in self.events if isinstance(e, UploadEvent) and e.upload_id == upload_id]

    def clear(self) -> None:
        self.events.clear()
        self.refused.clear()


# Documents (sessions).


class MemoryDocumentStore:
    """Documents with compare-and-swap versions, like the S3-backed store (conditional writes).

    `fail_with` makes every call raise (e.g. ServiceUnavailable); `writes` counts
    successful create/replace calls.
    """

    def __init__(self) -> None:
        self._documents: dict[str, Versioned] = {}
        self._versions = itertools.count(1)
        self.fail_with: Exception | None = None
        self.writes = 0

    async def create(self, key: str, data: bytes) -> str:
        self._maybe_fail()
        if key in self._documents:
            raise VersionConflict(
                f"document {key!r} already exists",
                details={"key": key, "code": "PreconditionFailed"},
            )
        return self._put(key, data)

    async def read(self, key: str) -> Versioned | None:
        self._maybe_fail()
        return self._documents.get(key)

    async def replace(self, key: str, data: bytes, *, version: str) -> str:
        self._maybe_fail()
        current = self._documents.get(key)
        if current is None or current.version != version:
            raise VersionConflict(
                f"document {key!r} changed since version {version}",
                details={
                    "key": key,
                    "code": "NoSuchKey" if current is None else "PreconditionFailed",
                },
            )
        return self._put(key, data)

    async def list_keys(self, prefix: str) -> list[str]:
        self._maybe_fail()
        return sorted(k for k in self._documents if k.startswith(prefix))

    async def delete(self, key: str) -> None:
        self._maybe_fail()
        self._documents.pop(key, None)

    def snapshot(self) -> dict[str, bytes]:
        """Every document's current data, by key."""
        return {k: v.data for k, v in self._documents.items()}

    def _put(self, key: str, data: bytes) -> str:
        version = f"v{next(self._versions)}"
        self._documents[key] = Versioned(data=bytes(data), version=version)
        self.writes += 1
        return version

    def _maybe_fail(self) -> None:
        if self.fail_with is not None:
            raise self.fail_with


# Quota.


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class _Usage:
    bytes_limit: int
    bytes_used: int
    uploads_limit: int
    uploads_used: int = 0
    counted: frozenset[str] = frozenset()


@dataclass
class FixedQuotaView:
    """Quota status from fixed numbers: defaults for everyone, overridden per user with `set`.

    Like every quota view, it answers for the current `period_days`-day period
    by `clock`; what `set` gave a user holds in every period.
    """

    bytes_limit: int = 10 * 1024**3
    uploads_limit: int = 100
    period_days: int = 30
    clock: Callable[[], datetime] = _utc_now
    _users: dict[str, _Usage] = field(default_factory=dict, repr=False)

    def set(
        self,
        user_id: str,
        *,
        bytes_used: int = 0,
        uploads_used: int = 0,
        bytes_limit: int | None = None,
        uploads_limit: int | None = None,
        counted: Iterable[str] = (),
    ) -> None:
        self._users[user_id] = _Usage(
            bytes_limit=self.bytes_limit if bytes_limit is None else bytes_limit,
            bytes_used=bytes_used,
            uploads_limit=self.uploads_limit if uploads_limit is None else uploads_limit,
            uploads_used=uploads_used,
            counted=frozenset(counted),
        )

    def counts(self, user_id: str, upload_id: str) -> bool:
        usage = self._users.get(user_id)
        return usage is not None and upload_id in usage.counted

    async def check(self) -> None:
        return None

    def status(self, user_id: str) -> QuotaStatus:
        usage = self._users.get(user_id) or _Usage(
            bytes_limit=self.bytes_limit, bytes_used=0, uploads_limit=self.uploads_limit
        )
        start, end = current_period(self.clock(), self.period_days)
        return QuotaStatus(
            user_id=user_id,
            bytes_limit=usage.bytes_limit,
            bytes_used=usage.bytes_used,
            uploads_limit=usage.uploads_limit,
            uploads_used=usage.uploads_used,
            period_start=rfc3339(start),
            period_end=rfc3339(end),
        )


# Feeds.


@dataclass
class StaticFeed:
    """A topic reader that reads nothing itself: a test hands records to the handler and sets
    the reader's health and readiness by hand."""

    topic: str = "ingest.quota"
    healthy: bool = False
    last_error: str | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        self.healthy = True
        self.ready.set()

    async def stop(self) -> None:
        self.healthy = False

    def positions(self) -> dict[TopicPartition, int]:
        return {}


# Request bodies and targets.

MP4_HEAD = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
MOV_HEAD = b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00qt  "
AVI_HEAD = b"RIFF\x00\x00\x10\x00AVI LIST"
MKV_HEAD = (
    b"\x1a\x45\xdf\xa3\xa3\x42\x86\x81\x01\x42\xf7\x81\x01\x42\xf2\x81\x04\x42\xf3\x81\x08"
    b"\x42\x82\x88matroska\x42\x87\x81\x04\x42\x85\x81\x02"
)
WEBM_HEAD = (
    b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01\x42\xf2\x81\x04\x42\xf3\x81\x08"
    b"\x42\x82\x84webm\x42\x87\x81\x02\x42\x85\x81\x02"
)
HEADS: dict[str, bytes] = {
    "mp4": MP4_HEAD,
    "mov": MOV_HEAD,
    "avi": AVI_HEAD,
    "mkv": MKV_HEAD,
    "webm": WEBM_HEAD,
}


def video_bytes(size: int, *, fmt: str = "mp4", seed: int = 0) -> bytes:
    """`size` deterministic bytes that start like a `fmt` container (truncated if tiny)."""
    head = HEADS[fmt]
    return (head + random.Random(seed).randbytes(max(0, size - len(head))))[:size]


class ScriptedBody:
    """A request body that yields `data` in `chunk`-byte pieces, then ends as scripted.

    `then`: raised after the last chunk (a reset connection, a timeout...);
    `stall`: instead of ending, wait forever (a client gone quiet), setting `stalled`;
    `delay`: seconds before each chunk; `before_chunk(index)`: called before each
    chunk is yielded (index from 1), e.g. to move a fake clock.
    `sent` counts the bytes handed out: what the server has read.
    """

    def __init__(
        self,
        data: bytes,
        chunk: int = 100,
        *,
        then: BaseException | None = None,
        stall: bool = False,
        delay: float = 0.0,
        before_chunk: Callable[[int], None] | None = None,
    ) -> None:
        if chunk <= 0:
            raise ValueError("chunk must be positive")
        self.data = data
        self.chunk = chunk
        self.then = then
        self.stall = stall
        self.delay = delay
        self.before_chunk = before_chunk
        self.sent = 0
        self.started = False
        self.stalled = asyncio.Event()

    async def chunks(self) -> AsyncIterator[bytes]:
        self.started = True
        for index, at in enumerate(range(0, len(self.data), self.chunk), start=1):
            if self.before_chunk is not None:
                self.before_chunk(index)
            if self.delay:
                await asyncio.sleep(self.delay)
            piece = self.data[at : at + self.chunk]
            self.sent += len(piece)
            yield piece
        if self.then is not None:
            raise self.then
        if self.stall:
            self.stalled.set()
            await asyncio.Event().wait()


def upload_target(**changes: Any) -> UploadTarget:
    """An UploadTarget for user-1's upload upl-1 of an mp4, with `changes` applied."""
    target = UploadTarget(
        upload_id="upl-1",
        user_id="user-1",
        bucket="test-bucket",
        s3_key="dashboard-uploads/user-1/upl-1/clip.mp4",
        filename="clip.mp4",
        content_type="video/mp4",
        declared_format="mp4",
        allowed_formats=("mp4", "mov", "avi", "mkv", "webm"),
        protocol="stream",
        priority=7,
        auto_analyze=True,
        metadata={"camera": "front"},
        dashboard_context={"page": "library"},
        declared_size=None,
        max_size=1_000_000,
        min_size=0,
        quota_bytes_remaining=None,
    )
    return msgspec.structs.replace(target, **changes)


if TYPE_CHECKING:
    # mypy proves each fake still satisfies its port when the port changes.
    _object_store: ObjectStore = MemoryObjectStore()
    _resumable: ResumableObjectStore = MemoryObjectStore()
    _multipart: MultipartUpload = MemoryMultipartUpload(MemoryObjectStore(), "k", "u", None, {})
    _sink: EventSink = RecordingEventSink()
    _documents: DocumentStore = MemoryDocumentStore()
    _quota: QuotaView = FixedQuotaView()
    _feed: TopicReader = StaticFeed()
