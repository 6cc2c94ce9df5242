"""The domain errors of the local-disk adapters, shaped like the S3 adapter's.

Callers of a port cannot tell the local store from S3 by its errors either:
the types are the same (ChecksumMismatch for a refused digest,
MultipartUploadMissing for an upload that is gone, StorageError for every
other refusal or disk error) and `details` carry the same fields (`operation`,
`bucket`, `key`, `code`, `status`), with S3's code where S3 has one
(`NoSuchUpload`, `NoSuchKey`, `InvalidPart`, `EntityTooSmall`, ...) and the
errno name (`ENOSPC`, ...) otherwise. A disk error is `retriable` only for the
errnos where the same call may well succeed a moment later.

How it fails: it does not; it only builds the errors.
"""

from __future__ import annotations

import errno
from typing import Any, Final

from infra.describe import in_words
from ingest.errors import ChecksumMismatch, MultipartUploadMissing, StorageError

# Disk errors worth retrying: the same call may well succeed in a moment.
_RETRIABLE_ERRNOS: Final = frozenset({errno.EAGAIN, errno.EBUSY, errno.EINTR, errno.ETIMEDOUT})


class LocalFailures:
    """Builds the domain errors of one local object store (one bucket)."""

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket

    def refused(
        self, operation: str, key: str, code: str, reason: str, *, status: int = 400
    ) -> StorageError:
        return StorageError(
            f"local {operation} of {key!r} failed: {code}: {reason}",
            details=_details(operation, self.bucket, key, code, status=status),
        )

    def checksum(self, operation: str, key: str, reason: str) -> ChecksumMismatch:
        return ChecksumMismatch(
            f"the checksum of {operation} of {key!r} was refused: BadDigest: {reason}",
            details=_details(operation, self.bucket, key, "BadDigest", status=400),
        )

    def missing_upload(self, operation: str, key: str, upload_id: str) -> MultipartUploadMissing:
        return MultipartUploadMissing(
            f"local {operation} of {key!r} failed: NoSuchUpload: "
            f"upload {upload_id} does not exist (aborted or completed)",
            details=_details(operation, self.bucket, key, "NoSuchUpload", status=404),
        )

    def missing_key(self, operation: str, key: str) -> StorageError:
        return self.refused(operation, key, "NoSuchKey", "no object has this key", status=404)

    def disk(self, operation: str, key: str, error: OSError) -> StorageError:
        return disk_error(operation, self.bucket, key, error)


def disk_error(operation: str, bucket: str | None, key: str, error: OSError) -> StorageError:
    """The StorageError for a failed file operation; `code` is the errno name (`ENOSPC`, ...)."""
    code = errno.errorcode.get(error.errno or 0, type(error).__name__)
    return StorageError(
        f"local {operation} of {key!r} failed: {in_words(error)}",
        details=_details(operation, bucket, key, code, status=None),
        retriable=error.errno in _RETRIABLE_ERRNOS,
    )


def _details(
    operation: str, bucket: str | None, key: str, code: str, *, status: int | None
) -> dict[str, Any]:
    return {"operation": operation, "bucket": bucket, "key": key, "code": code, "status": status}
