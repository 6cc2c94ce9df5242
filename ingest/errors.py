"""Domain errors of the write path, declared together.

Each carries the `ErrorCode` published in `ingest.upload.failed` (when the error
ends an upload), a stable `error_code` string for API clients and a typed
`retriable` flag (see `infra.errors`). Only the HTTP edge
(`ingest.http.errors`) knows which status each one becomes.
"""

from __future__ import annotations

from infra.errors import EventDeliveryError as EventDeliveryError
from infra.errors import JournalFull as JournalFull
from infra.errors import ServiceError
from infra.errors import ServiceUnavailable as ServiceUnavailable
from infra.errors import Unauthenticated as Unauthenticated

IngestError = ServiceError
"""The write path's name for the base of every error raised on purpose (its own or plumbing's)."""


# Requests the service refuses before or while reading a body.
class InvalidRequest(IngestError):
    error_code = "INVALID_REQUEST"


class Forbidden(IngestError):
    error_code = "FORBIDDEN"


class SessionNotFound(IngestError):
    error_code = "SESSION_NOT_FOUND"


class SessionExpired(SessionNotFound):
    error_code = "SESSION_EXPIRED"


class SessionConflict(IngestError):
    """The session was already used: claimed by another request, or ended."""

    error_code = "SESSION_ALREADY_USED"


class VersionConflict(IngestError):
    """A compare-and-swap on a shared document lost: another writer created or changed it first.

    Retriable: reading the document again and redoing the change may succeed.
    Use cases that retry catch it; one that reaches a client is a 409.
    """

    error_code = "VERSION_CONFLICT"
    retriable_by_default = True


class SizeNotAllowed(IngestError):
    """A declared size outside the allowed range, refused when the session is created."""

    error_code = "FILE_SIZE_NOT_ALLOWED"


class FormatNotAllowed(IngestError):
    error_code = "FORMAT_NOT_ALLOWED"
    event_code = "UNSUPPORTED_FORMAT"


# Errors that end an upload: each maps to the `error_code` of `ingest.upload.failed`.
class TooLarge(IngestError):
    error_code = "FILE_TOO_LARGE"
    event_code = "TOO_LARGE"


class TooSmall(IngestError):
    error_code = "FILE_TOO_SMALL"
    event_code = "TOO_LARGE"  # a size outside the allowed range; the contract has no TOO_SMALL


class UnsupportedFormat(IngestError):
    error_code = "UNSUPPORTED_MEDIA_TYPE"
    event_code = "UNSUPPORTED_FORMAT"


class QuotaExceeded(IngestError):
    error_code = "QUOTA_EXCEEDED"
    event_code = "QUOTA_EXCEEDED"


class ClientDisconnected(IngestError):
    error_code = "CLIENT_DISCONNECTED"
    event_code = "CLIENT_DISCONNECTED"


class IncompleteBody(ClientDisconnected):
    """The body is, or ended, shorter than the size the client declared for it.

    Its own Content-Length under the session's `expected_file_size` is refused
    before any byte is read; a body that ends short is refused when it ends.
    """

    error_code = "SIZE_MISMATCH"


class StorageError(IngestError):
    error_code = "STORAGE_ERROR"
    event_code = "STORAGE_ERROR"


class MultipartUploadMissing(StorageError):
    """The multipart upload does not exist (any more): aborted, completed, or never this key's.

    S3 answers `NoSuchUpload`. Not retriable: the upload will not come back.
    """


class ChecksumMismatch(IngestError):
    error_code = "CHECKSUM_MISMATCH"
    event_code = "CHECKSUM_MISMATCH"


class UploadTimeout(IngestError):
    error_code = "TIMEOUT"
    event_code = "TIMEOUT"


class UploadCancelledError(IngestError):
    error_code = "UPLOAD_CANCELLED"
    event_code = "CANCELLED"


# Resumable (tus) uploads.
class UnsupportedProtocolVersion(IngestError):
    """The client speaks a version of the resumable-upload protocol this server does not."""

    error_code = "UNSUPPORTED_PROTOCOL_VERSION"


class OffsetMismatch(IngestError):
    """A resumed upload was sent from an offset other than the one the server holds."""

    error_code = "OFFSET_MISMATCH"


class UploadGone(IngestError):
    """A resumable upload that existed but can no longer be resumed: terminated, failed, expired."""

    error_code = "UPLOAD_GONE"


class UploadLocked(IngestError):
    """Another request is still writing to this resumable upload; retry shortly."""

    error_code = "UPLOAD_LOCKED"
    retriable_by_default = True


# The tus concatenation extension.
class InvalidConcat(InvalidRequest):
    """A final upload that cannot be made from the partial uploads it names."""

    error_code = "INVALID_CONCAT"


class PartialUploadNotFound(SessionNotFound):
    """A partial upload named by a final that does not exist or is not the caller's: the same
    answer for both, so that nobody learns of another user's uploads."""

    error_code = "PARTIAL_UPLOAD_NOT_FOUND"


class PartialUploadNotFinished(InvalidConcat):
    error_code = "PARTIAL_UPLOAD_NOT_FINISHED"


class PartialUploadTooSmall(InvalidConcat):
    """A partial upload other than the last under S3's smallest part (5 MiB)."""

    error_code = "PARTIAL_UPLOAD_TOO_SMALL"


class FinalUploadReadOnly(Forbidden):
    """A PATCH to a final upload: its bytes come from its partial uploads only."""

    error_code = "FINAL_UPLOAD_READ_ONLY"
