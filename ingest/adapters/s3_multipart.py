"""One open S3 multipart upload: its parts uploaded or copied, then completed and checked.

Every uploaded part carries its own CRC32C (`ChecksumCRC32C`), so S3 verifies
each part, and `complete` checks the composite checksum S3 reports against the
parts it was given, so the stored object is exactly those parts in that order.
A part copied from a stored object inside S3 (UploadPartCopy, tus
concatenation) goes into an upload started without a checksum algorithm: S3
refuses a copied part into an upload that asks for checksums, so such parts
carry none, are named by their ETags alone, and leave nothing composite to
compare.

How it fails: as every S3 call does (`s3_calls`): ChecksumMismatch for a part
whose checksum S3 refuses or echoes changed, MultipartUploadMissing when the
upload no longer exists, StorageError otherwise. An object S3 assembled from
other parts than the ones completed is deleted and raises ChecksumMismatch.
Aborting an upload that no longer exists is not an error.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import ClientError

from infra.checksums import composite_crc32c
from ingest.adapters.s3_calls import S3Calls, check_echoed_checksum, error_code
from ingest.errors import ChecksumMismatch, IngestError, StorageError
from ingest.ports import StoredObject, StoredPart

log = logging.getLogger(__name__)


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
        check_echoed_checksum(response, "ChecksumCRC32C", crc32c_b64, self._key, f"part {number}")
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
