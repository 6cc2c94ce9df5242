"""S3 calls timed for an observer, and S3's failures turned into the service's domain errors.

Every S3 call of the object and the document store runs inside `S3Calls.call`,
which reports the operation, its duration and whether it was answered, and
translates what the client stack raises: a checksum S3 refuses becomes
ChecksumMismatch, a multipart upload that no longer exists (`NoSuchUpload`)
MultipartUploadMissing, and any other S3 answer, connection error or timeout
StorageError naming the operation and key, with `retriable` telling whether
trying again may help. `check_echoed_checksum` holds S3 to the checksum it
echoes for what it stored.

How it fails: it raises only those domain errors; an observer that raises is
logged and never fails the call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from botocore.exceptions import BotoCoreError, ClientError
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.exceptions import HTTPClientError as BotoHTTPClientError

from infra.describe import in_words
from ingest.errors import ChecksumMismatch, IngestError, MultipartUploadMissing, StorageError

log = logging.getLogger(__name__)

S3CallObserver = Callable[[str, float, bool], None]
"""Told of every S3 call: (operation, seconds, ok). `ok` is False when the call failed."""

# Codes S3 and MinIO use when a body does not match the checksum sent with it.
CHECKSUM_ERROR_CODES = frozenset(
    {
        "BadDigest",
        "InvalidDigest",
        "XAmzContentChecksumMismatch",
        "XAmzContentSHA256Mismatch",
        "InvalidChecksum",
    }
)
_RETRIABLE_CODES = frozenset(
    {
        "InternalError",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "XMinioServerNotInitialized",
    }
)
# Exceptions of the client stack that mean "S3 did not answer properly".
_CLIENT_FAILURES = (ClientError, BotoCoreError, aiohttp.ClientError, OSError, TimeoutError)


def error_code(error: BaseException) -> str | None:
    """The S3 error code of a ClientError (`NoSuchKey`, `PreconditionFailed`, ...), else None."""
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code")
        return str(code) if code is not None else None
    return None


def http_status(error: BaseException) -> int | None:
    if isinstance(error, ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return int(status) if status is not None else None
    return None


def storage_error(operation: str, bucket: str, key: str, error: BaseException) -> IngestError:
    """The domain error for a failed S3 call: ChecksumMismatch, MultipartUploadMissing or
    StorageError."""
    code = error_code(error)
    status = http_status(error)
    details: dict[str, Any] = {
        "operation": operation,
        "bucket": bucket,
        "key": key,
        "code": code or type(error).__name__,
        "status": status,
    }
    retriable = _is_retriable(error, code, status)
    target = f" of {key!r}" if key else f" on bucket {bucket!r}"
    if code in CHECKSUM_ERROR_CODES:
        return ChecksumMismatch(
            f"S3 refused the checksum of {operation}{target}: {code}",
            details=details,
            retriable=retriable,
        )
    if isinstance(error, ClientError):
        message = error.response.get("Error", {}).get("Message") or str(error)
        reason = f"{code} (HTTP {status}): {message}"
    else:
        reason = in_words(error)
    kind = MultipartUploadMissing if code == "NoSuchUpload" else StorageError
    return kind(f"S3 {operation}{target} failed: {reason}", details=details, retriable=retriable)


def _is_retriable(error: BaseException, code: str | None, status: int | None) -> bool:
    if isinstance(error, ClientError):
        return code in _RETRIABLE_CODES or (status is not None and status >= 500)
    return isinstance(
        error,
        BotoConnectionError | BotoHTTPClientError | aiohttp.ClientError | OSError | TimeoutError,
    )


class S3Calls:
    """Times S3 calls for an observer and turns client failures into domain errors.

    Shared by the object and the document store. Domain errors raised inside a
    call (VersionConflict for a refused precondition, ...) pass through and
    count as answered calls; cancellation is not reported.
    """

    def __init__(self, bucket: str, observer: S3CallObserver | None) -> None:
        self.bucket = bucket
        self._observer = observer

    @asynccontextmanager
    async def call(self, operation: str, key: str) -> AsyncIterator[None]:
        started = time.perf_counter()
        try:
            yield
        except _CLIENT_FAILURES as error:
            self._report(operation, started, ok=False)
            raise storage_error(operation, self.bucket, key, error) from error
        except IngestError as error:
            self._report(operation, started, ok=not isinstance(error, StorageError))
            raise
        self._report(operation, started, ok=True)

    def _report(self, operation: str, started: float, *, ok: bool) -> None:
        if self._observer is None:
            return
        try:
            self._observer(operation, time.perf_counter() - started, ok)
        except Exception:
            # Metrics must never fail an upload; the bug still shows in the log.
            log.exception("the S3 call observer failed on %s", operation)


def check_echoed_checksum(
    response: Mapping[str, Any], field: str, sent: str, key: str, what: str
) -> None:
    echoed = response.get(field)
    if echoed is not None and echoed != sent:
        raise ChecksumMismatch(
            f"S3 stored {what} of {key!r} with another checksum ({field})",
            details={"key": key, "what": what, "sent": sent, "stored": echoed},
        )
