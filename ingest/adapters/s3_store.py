"""S3 object storage for the write path: `ObjectStore` over one shared aiobotocore client.

The store starts multipart uploads (`s3_multipart.S3MultipartUpload` is one),
resumes them on any instance (`ResumableObjectStore`: a tus upload's parts,
also into an upload an earlier version started with SHA-256 part checksums, and
small tail objects), starts the uploads whose parts are copied inside S3
(`PartCopying`, tus concatenation), stores a whole object by one PUT carrying
its SHA-256 (`ChecksumSHA256`), and reads, sizes and deletes objects.

A part body goes to the socket as slices of the caller's bytes, never copied
whole on the way (`SlicedBody`, sent by the client `s3_client_config` builds).

How it fails: as every S3 call does (`s3_calls`): ChecksumMismatch for an
object whose checksum S3 refuses or echoes changed, StorageError naming the
operation and key otherwise; reading or sizing a missing object returns None;
`check` raises ServiceUnavailable. The client is shared and owned by the
caller (or by `open`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Self

from aiobotocore.config import AioConfig
from botocore.exceptions import ClientError

from infra.s3 import S3Endpoint, open_s3_client, send_data_bodies_as_is
from ingest.adapters.s3_calls import S3CallObserver, S3Calls, check_echoed_checksum, error_code
from ingest.adapters.s3_multipart import S3MultipartUpload
from ingest.errors import IngestError, ServiceUnavailable
from ingest.ports import STARTED_PART_CHECKSUM, PartChecksum, StoredObject, StoredPart


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
            params["ChecksumAlgorithm"] = STARTED_PART_CHECKSUM
        if content_type is not None:
            params["ContentType"] = content_type
        async with self._calls.call("create_multipart_upload", key):
            response = await self._client.create_multipart_upload(**params)
        carried = STARTED_PART_CHECKSUM if checksums else None
        return S3MultipartUpload(self._client, self._calls, key, response["UploadId"], carried)

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
        check_echoed_checksum(response, "ChecksumSHA256", sha256_b64, key, "object")
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

    def resume_multipart(
        self, key: str, upload_id: str, part_checksum: PartChecksum | None = None
    ) -> S3MultipartUpload:
        return S3MultipartUpload(self._client, self._calls, key, upload_id, part_checksum)

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
                        sha256_b64=part.get("ChecksumSHA256", ""),
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
