"""S3 multipart uploads for the write path: `ObjectStore` over one shared aiobotocore client.

Every part carries its own CRC32C (`ChecksumCRC32C`), so S3 verifies each part,
and `complete` checks the composite checksum S3 reports against the parts it
was given, so the stored object is exactly those parts in that order. A whole
object stored by one PUT carries its SHA-256 (`ChecksumSHA256`). The
`PartCopying` capability (tus concatenation) starts an upload without a
checksum algorithm, whose parts are copied from stored objects inside S3
(UploadPartCopy): S3 refuses a copied part into an upload that asks for
checksums, so such parts carry none and are named by their ETags alone.

A part body goes to the socket as slices of the caller's bytes, never copied
whole on the way (`SlicedBody`, sent by the client `s3_client_config` builds).

How it fails: a part or object whose checksum S3 refuses raises ChecksumMismatch;
a call on a multipart upload that no longer exists (`NoSuchUpload`) raises
MultipartUploadMissing; any other S3 answer, connection error or timeout raises
StorageError naming the operation and key (`retriable` tells whether trying
again may help); `check` raises ServiceUnavailable. Aborting an upload that no
longer exists is not an error. The client is shared and owned by the caller (or by `open`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Self

import aiohttp
import aiohttp.payload
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.exceptions import HTTPClientError as BotoHTTPClientError

from infra.checksums import composite_crc32c
from infra.describe import in_words
from infra.s3 import S3Endpoint, open_s3_client, send_data_bodies_as_is
from ingest.errors import (
    ChecksumMismatch,
    IngestError,
    MultipartUploadMissing,
    ServiceUnavailable,
    StorageError,
)
from ingest.ports import StoredObject, StoredPart

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


def _check_echoed_checksum(
    response: Mapping[str, Any], field: str, sent: str, key: str, what: str
) -> None:
    echoed = response.get(field)
    if echoed is not None and echoed != sent:
        raise ChecksumMismatch(
            f"S3 stored {what} of {key!r} with another checksum ({field})",
            details={"key": key, "what": what, "sent": sent, "stored": echoed},
        )


class S3MultipartUpload:
    """One open multipart upload; parts may be uploaded concurrently, in any order."""

    def __init__(self, client: Any, calls: S3Calls, key: str, upload_id: str) -> None:
        self._client = client
        self._calls = calls
        self._key = key
        self._upload_id = upload_id

    @property
    def key(self) -> str:
        return self._key

    @property
    def upload_id(self) -> str:
        return self._upload_id

    async def upload_part(self, number: int, data: bytes, crc32c_b64: str) -> StoredPart:
        async with self._calls.call("upload_part", self._key):
            response = await self._client.upload_part(
                Bucket=self._calls.bucket,
                Key=self._key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=data,
                # The value alone, no ChecksumAlgorithm: botocore would then insist on
                # computing CRC32C itself (with awscrt); S3 verifies the header either way.
                ChecksumCRC32C=crc32c_b64,
            )
        _check_echoed_checksum(response, "ChecksumCRC32C", crc32c_b64, self._key, f"part {number}")
        return StoredPart(
            number=number, etag=response["ETag"], size=len(data), crc32c_b64=crc32c_b64
        )

    async def copy_part(
        self, number: int, source_key: str, byte_range: tuple[int, int] | None = None
    ) -> StoredPart:
        """Part `number` copied inside S3 from `source_key` (see `CopyingMultipartUpload`)."""
        bucket = self._calls.bucket
        params: dict[str, Any] = {
            "Bucket": bucket,
            "Key": self._key,
            "UploadId": self._upload_id,
            "PartNumber": number,
            "CopySource": {"Bucket": bucket, "Key": source_key},
        }
        if byte_range is not None:
            start, end = byte_range
            if not 0 <= start < end:
                raise StorageError(
                    f"cannot copy the empty or reversed range {byte_range} of {source_key!r}",
                    details={"key": source_key, "range": list(byte_range)},
                    retriable=False,
                )
            params["CopySourceRange"] = f"bytes={start}-{end - 1}"
            size = end - start
        else:
            async with self._calls.call("head_object", source_key):
                head = await self._client.head_object(Bucket=bucket, Key=source_key)
            size = head["ContentLength"]
        async with self._calls.call("upload_part_copy", self._key):
            response = await self._client.upload_part_copy(**params)
        etag = response["CopyPartResult"]["ETag"]
        return StoredPart(number=number, etag=etag, size=size, crc32c_b64="")

    async def complete(self, parts: Sequence[StoredPart]) -> StoredObject:
        ordered = sorted(parts, key=lambda part: part.number)
        async with self._calls.call("complete_multipart_upload", self._key):
            response = await self._client.complete_multipart_upload(
                Bucket=self._calls.bucket,
                Key=self._key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": [_listed(part) for part in ordered]},
            )
        reported = response.get("ChecksumCRC32C")
        # Copied parts carry no checksum (see `copy_part`): nothing composite to compare then.
        checked = all(part.crc32c_b64 for part in ordered)
        expected = composite_crc32c(part.crc32c_b64 for part in ordered) if checked else None
        if checked and reported is not None and reported != expected:
            # The assembled object is not the parts we sent, in our order: never keep it.
            await self._delete_quietly()
            raise ChecksumMismatch(
                f"S3 assembled {self._key!r} from other parts than the ones completed",
                details={"key": self._key, "expected": expected, "reported": reported},
            )
        return StoredObject(
            key=self._key, etag=response.get("ETag"), size=sum(part.size for part in ordered)
        )

    async def abort(self) -> None:
        async with self._calls.call("abort_multipart_upload", self._key):
            try:
                await self._client.abort_multipart_upload(
                    Bucket=self._calls.bucket, Key=self._key, UploadId=self._upload_id
                )
            except ClientError as error:
                # Already aborted or completed: nothing of this upload is left to remove.
                if error_code(error) != "NoSuchUpload":
                    raise

    async def _delete_quietly(self) -> None:
        try:
            async with self._calls.call("delete_object", self._key):
                await self._client.delete_object(Bucket=self._calls.bucket, Key=self._key)
        except IngestError as error:
            log.error("could not delete the mis-assembled object %s: %s", self._key, error)


def _listed(part: StoredPart) -> dict[str, Any]:
    """A part as CompleteMultipartUpload lists it; a copied part has no checksum to list."""
    listed: dict[str, Any] = {"PartNumber": part.number, "ETag": part.etag}
    if part.crc32c_b64:
        listed["ChecksumCRC32C"] = part.crc32c_b64
    return listed


class S3ObjectStore:
    """`ObjectStore` over a shared aiobotocore S3 client that the caller keeps open."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        *,
        observer: S3CallObserver | None = None,
        check_timeout: float = 5.0,
    ) -> None:
        self._client = client
        self._calls = S3Calls(bucket, observer)
        self._check_timeout = check_timeout
        send_data_bodies_as_is(client)

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        endpoint: S3Endpoint,
        bucket: str,
        *,
        observer: S3CallObserver | None = None,
        config: AioConfig | None = None,
        check_timeout: float = 5.0,
    ) -> AsyncIterator[Self]:
        """A store with its own client (see `s3_client_config`), closed on exit."""
        async with open_s3_client(endpoint, config=config) as client:
            yield cls(client, bucket, observer=observer, check_timeout=check_timeout)

    @property
    def bucket(self) -> str:
        return self._calls.bucket

    async def start_multipart(
        self, key: str, *, content_type: str | None, metadata: Mapping[str, str]
    ) -> S3MultipartUpload:
        return await self._create_multipart(key, content_type, metadata, checksums=True)

    async def start_copy_multipart(
        self, key: str, *, content_type: str | None, metadata: Mapping[str, str]
    ) -> S3MultipartUpload:
        """A multipart upload for parts copied from stored objects: without a checksum
        algorithm, since S3 refuses UploadPartCopy into an upload created with one."""
        return await self._create_multipart(key, content_type, metadata, checksums=False)

    async def _create_multipart(
        self, key: str, content_type: str | None, metadata: Mapping[str, str], *, checksums: bool
    ) -> S3MultipartUpload:
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "Metadata": dict(metadata)}
        if checksums:
            params["ChecksumAlgorithm"] = "CRC32C"
        if content_type is not None:
            params["ContentType"] = content_type
        async with self._calls.call("create_multipart_upload", key):
            response = await self._client.create_multipart_upload(**params)
        return S3MultipartUpload(self._client, self._calls, key, response["UploadId"])

    async def put_object(
        self,
        key: str,
        data: bytes,
        sha256_b64: str,
        *,
        content_type: str | None,
        metadata: Mapping[str, str],
    ) -> StoredObject:
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "Body": data,
            "ChecksumAlgorithm": "SHA256",
            "ChecksumSHA256": sha256_b64,
            "Metadata": dict(metadata),
        }
        if content_type is not None:
            params["ContentType"] = content_type
        async with self._calls.call("put_object", key):
            response = await self._client.put_object(**params)
        _check_echoed_checksum(response, "ChecksumSHA256", sha256_b64, key, "object")
        return StoredObject(key=key, etag=response.get("ETag"), size=len(data))

    async def incomplete_uploads(self, key: str) -> list[str]:
        upload_ids: list[str] = []
        async with self._calls.call("list_multipart_uploads", key):
            # MinIO lists multipart uploads only for a prefix that is an exact
            # object key; S3 treats it as a prefix, hence the filter on Key.
            paginator = self._client.get_paginator("list_multipart_uploads")
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=key):
                upload_ids.extend(
                    upload["UploadId"] for upload in page.get("Uploads", []) if upload["Key"] == key
                )
        return upload_ids

    async def check(self) -> None:
        try:
            async with asyncio.timeout(self._check_timeout):
                async with self._calls.call("head_bucket", ""):
                    await self._client.head_bucket(Bucket=self.bucket)
        except TimeoutError:
            raise ServiceUnavailable(
                f"S3 bucket {self.bucket!r} did not answer within {self._check_timeout:g} s",
                details={"bucket": self.bucket},
            ) from None
        except IngestError as error:
            raise ServiceUnavailable(
                f"S3 bucket {self.bucket!r} is not available: {error.message}",
                details=error.details,
            ) from error

    # ResumableObjectStore: what a tus upload resumed on any instance needs.

    def resume_multipart(self, key: str, upload_id: str) -> S3MultipartUpload:
        return S3MultipartUpload(self._client, self._calls, key, upload_id)

    async def stored_parts(self, key: str, upload_id: str) -> list[StoredPart]:
        parts: list[StoredPart] = []
        async with self._calls.call("list_parts", key):
            paginator = self._client.get_paginator("list_parts")
            async for page in paginator.paginate(Bucket=self.bucket, Key=key, UploadId=upload_id):
                parts.extend(
                    StoredPart(
                        number=part["PartNumber"],
                        etag=part["ETag"],
                        size=part["Size"],
                        crc32c_b64=part.get("ChecksumCRC32C", ""),
                    )
                    for part in page.get("Parts", [])
                )
        return sorted(parts, key=lambda part: part.number)

    async def put_small(self, key: str, data: bytes) -> None:
        # "Small" is up to a part: hashed off the event loop.
        checksum = await asyncio.to_thread(hashlib.sha256, data)
        async with self._calls.call("put_object", key):
            await self._client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=data,
                ChecksumSHA256=base64.b64encode(checksum.digest()).decode(),
            )

    async def get_small(self, key: str) -> bytes | None:
        async with self._calls.call("get_object", key):
            try:
                response = await self._client.get_object(Bucket=self.bucket, Key=key)
            except ClientError as error:
                if error_code(error) == "NoSuchKey":
                    return None
                raise
            async with response["Body"] as body:
                data: bytes = await body.read()
        return data

    async def stored_size(self, key: str) -> int | None:
        async with self._calls.call("head_object", key):
            try:
                response = await self._client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as error:
                # A HEAD has no body: S3 says only 404.
                if error_code(error) in ("404", "NoSuchKey", "NotFound"):
                    return None
                raise
        size: int = response["ContentLength"]
        return size

    async def delete(self, key: str) -> None:
        async with self._calls.call("delete_object", key):
            await self._client.delete_object(Bucket=self.bucket, Key=key)

    async def read_object(self, key: str) -> AsyncIterator[bytes]:
        async with self._calls.call("read_object", key):
            response = await self._client.get_object(Bucket=self.bucket, Key=key)
            async with response["Body"] as body:
                async for chunk in body.iter_chunks(1024 * 1024):
                    yield chunk
