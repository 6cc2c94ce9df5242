"""The ports of the write path: what the pipeline and services need from the outside world.

Adapters (S3, Kafka, local disk, in-process bus) implement these; the pipeline and
the session service only ever see these Protocols. Every method raises the
domain errors of `ingest.errors` (StorageError, EventDeliveryError, ...) rather
than a client library's exceptions; a caller branches on their types (and the
typed `retriable` flag), never on a code in `details`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal, Protocol, runtime_checkable

from schemas import Event

PartChecksum = Literal["CRC32C", "SHA256"]
"""The checksum every part of a multipart upload carries, fixed when the upload is started."""

STARTED_PART_CHECKSUM: Final[PartChecksum] = "CRC32C"
"""What the parts of every upload `start_multipart` starts carry. Earlier versions started
uploads whose parts carry a SHA-256; such an upload, resumed, takes its parts still."""


@dataclass(frozen=True)
class StoredPart:
    number: int
    etag: str
    size: int
    crc32c_b64: str
    """The part's base64 CRC32C, which the store verified (`infra.checksums`); empty for a
    part that carries a SHA-256 instead, or no checksum (copied)."""
    sha256_b64: str = ""
    """The part's base64 SHA-256, for a part of an upload whose parts carry one (started by
    an earlier version); empty otherwise."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    etag: str | None
    size: int


class MultipartUpload(Protocol):
    """One open multipart upload. Parts may be uploaded concurrently, in any order.

    Once the upload is gone (aborted, completed) or when it never existed for
    this key, `upload_part` and `complete` raise MultipartUploadMissing.
    """

    @property
    def key(self) -> str: ...

    @property
    def upload_id(self) -> str: ...

    async def upload_part(self, number: int, data: bytes, crc32c_b64: str) -> StoredPart:
        """Store one part; the store verifies `crc32c_b64` (ChecksumMismatch when it differs).

        A part of an upload whose parts carry a SHA-256 (`PartChecksum`) is checked against
        `crc32c_b64` by the adapter itself, then stored with its SHA-256 (computed in a
        worker thread), which the store verifies; its `StoredPart` carries that SHA-256.
        """
        ...

    async def complete(self, parts: Sequence[StoredPart]) -> StoredObject:
        """Assemble the listed parts, in part-number order, into the object.

        StorageError when a part was not stored as listed or is too small;
        the upload then stays open, to be aborted.
        """
        ...

    async def abort(self) -> None:
        """Remove every stored part. Safe to call twice and after a failed complete."""
        ...


class ObjectStore(Protocol):
    @property
    def bucket(self) -> str: ...

    async def start_multipart(
        self, key: str, *, content_type: str | None, metadata: Mapping[str, str]
    ) -> MultipartUpload:
        """A new multipart upload whose parts carry `STARTED_PART_CHECKSUM`."""
        ...

    async def put_object(
        self,
        key: str,
        data: bytes,
        sha256_b64: str,
        *,
        content_type: str | None,
        metadata: Mapping[str, str],
    ) -> StoredObject:
        """Store a whole object in one request (a body that fits in one part); the store
        verifies `sha256_b64` (ChecksumMismatch when it differs)."""
        ...

    async def delete(self, key: str) -> None:
        """Remove an object; removing one that does not exist is not an error."""
        ...

    async def incomplete_uploads(self, key: str) -> list[str]:
        """Upload ids of multipart uploads still open for exactly this key."""
        ...

    async def check(self) -> None:
        """Raise ServiceUnavailable unless the bucket answers."""
        ...


@dataclass(frozen=True)
class Versioned:
    data: bytes
    version: str


class DocumentStore(Protocol):
    """Small JSON documents (upload sessions) shared by every instance.

    Updates are compare-and-swap on `version`, so two instances can never both
    win the same session: the loser gets VersionConflict (retriable), and
    decides whether to read again and retry.
    """

    async def create(self, key: str, data: bytes) -> str:
        """Store a new document; returns its version. VersionConflict if the key exists."""
        ...

    async def read(self, key: str) -> Versioned | None: ...

    async def replace(self, key: str, data: bytes, *, version: str) -> str:
        """Replace the document if it still has `version`; VersionConflict otherwise,
        also when the document no longer exists."""
        ...

    async def list_keys(self, prefix: str) -> list[str]: ...

    async def delete(self, key: str) -> None:
        """Remove the document; removing one that does not exist is no error."""
        ...


class EventSink(Protocol):
    async def emit(self, event: Event) -> None:
        """Hand the event to the bus within a bounded time, or raise EventDeliveryError."""
        ...

    async def check(self) -> None:
        """Raise ServiceUnavailable unless the bus answers."""
        ...


@dataclass(frozen=True)
class BacklogState:
    """What an event sink holds that the bus has not taken yet, and whether the bus answers."""

    broker_up: bool
    events: int
    bytes: int
    oldest_seconds: float | None
    has_room: bool
    """False once new uploads must be refused (full, or its oldest event too old)."""


@runtime_checkable
class EventBacklog(Protocol):
    """Optional capability of an EventSink that keeps events while the bus is away (a journal).

    Admission asks it before every new upload; readiness and metrics read its state.
    """

    def check_room(self) -> None:
        """Raise JournalFull when the events of one more upload must not be taken on."""
        ...

    def backlog(self) -> BacklogState: ...


@dataclass(frozen=True)
class QuotaStatus:
    user_id: str
    bytes_limit: int
    bytes_used: int
    uploads_limit: int
    uploads_used: int
    period_start: str
    period_end: str

    @property
    def bytes_remaining(self) -> int:
        return max(0, self.bytes_limit - self.bytes_used)

    @property
    def uploads_remaining(self) -> int:
        return max(0, self.uploads_limit - self.uploads_used)


class QuotaView(Protocol):
    """What a user has used and may use, as last published on the quota topic."""

    def status(self, user_id: str) -> QuotaStatus: ...

    def counts(self, user_id: str, upload_id: str) -> bool:
        """True once the user's published snapshot of the current period charges this upload."""
        ...

    async def check(self) -> None:
        """Raise ServiceUnavailable unless the view is caught up and still reading."""
        ...


@runtime_checkable
class ResumableObjectStore(Protocol):
    """Optional capability: what an upload resumed across requests and instances needs.

    A store offers it on top of `ObjectStore` when a multipart upload can be
    picked up again by its id from any process, and small objects can be kept
    beside it (the bytes of a part not yet full). Same errors as `ObjectStore`.
    """

    def resume_multipart(
        self, key: str, upload_id: str, part_checksum: PartChecksum | None = None
    ) -> MultipartUpload:
        """A handle on a multipart upload started earlier, possibly by another process.

        Nothing is checked until it is used: calls on an upload that is gone
        raise MultipartUploadMissing. `part_checksum` is what its parts carry, when the
        caller recorded it as the upload was started; None when it did not (an upload an
        earlier version started): the store then finds out before the first part (S3:
        one ListParts per handle).
        """
        ...

    async def stored_parts(self, key: str, upload_id: str) -> list[StoredPart]:
        """The parts the multipart upload holds now, by number; MultipartUploadMissing once
        it is gone."""
        ...

    async def put_small(self, key: str, data: bytes) -> None:
        """Store a small object whole (replacing one with that key)."""
        ...

    async def get_small(self, key: str) -> bytes | None:
        """A small object's bytes, or None when there is no such object."""
        ...

    async def stored_size(self, key: str) -> int | None:
        """The size of a stored object (read without its bytes), or None when there is none."""
        ...

    def read_object(self, key: str) -> AsyncIterator[bytes]:
        """A stored object's bytes, as a stream of chunks (never the whole object at once)."""
        ...


class CopyingMultipartUpload(Protocol):
    """A multipart upload whose parts are copied from objects already stored: no byte passes
    through this process (S3's UploadPartCopy).

    It keeps no per-part checksums: S3 refuses a copied part into an upload created with a
    checksum algorithm. A copied part's `StoredPart.crc32c_b64` is therefore empty; its
    ETag still names its bytes. Same errors as `MultipartUpload`; a source that does not
    exist, or a range outside it, raises StorageError.
    """

    @property
    def key(self) -> str: ...

    @property
    def upload_id(self) -> str: ...

    async def copy_part(
        self, number: int, source_key: str, byte_range: tuple[int, int] | None = None
    ) -> StoredPart:
        """Store part `number` as bytes [start, end) of the object `source_key` (all of it when
        `byte_range` is None; S3 copies a range only out of an object over 5 MiB)."""
        ...

    async def complete(self, parts: Sequence[StoredPart]) -> StoredObject: ...

    async def abort(self) -> None: ...


@runtime_checkable
class PartCopying(Protocol):
    """Optional capability: an object assembled from objects already stored (tus concatenation).

    Parts of at most 5 GiB each, all but the last at least the store's minimum part size
    (S3: 5 MiB), as for any multipart upload.
    """

    async def start_copy_multipart(
        self, key: str, *, content_type: str | None, metadata: Mapping[str, str]
    ) -> CopyingMultipartUpload: ...


@runtime_checkable
class ObjectSizes(Protocol):
    """Optional capability: whether an object is stored, and its size (one HEAD request)."""

    async def stored_size(self, key: str) -> int | None:
        """The size of the object stored under `key`; None when there is none."""
        ...


@dataclass(frozen=True)
class TerminalEventsSeen:
    """The upload lifecycle's terminal events one read of the uploads topic found."""

    event_ids: frozenset[str]
    """The CloudEvents ids of every `upload.completed`, `.failed` and `.cancelled` read."""
    completed_uploads: frozenset[str]
    """The upload ids of every `upload.completed` read, whatever its id."""
    records: int
    """How many records were read."""


class UploadsHistory(Protocol):
    """What the uploads topic holds, read to its end as it is when asked."""

    async def terminal_events(self, since: datetime | None) -> TerminalEventsSeen:
        """The terminal events of the records stamped at or after `since` (all when None).

        ServiceUnavailable when the topic cannot be read to its end in the time allowed.
        """
        ...
