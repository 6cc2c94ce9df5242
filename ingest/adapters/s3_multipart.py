"""One open S3 multipart upload: its parts uploaded or copied, then completed and checked.

Every uploaded part carries its own CRC32C (`ChecksumCRC32C`), so S3 verifies
each part, and `complete` checks the composite checksum S3 reports against the
parts it was given, so the stored object is exactly those parts in that order.
A part copied from a stored object inside S3 (UploadPartCopy, tus
concatenation) goes into an upload started without a checksum algorithm: S3
refuses a copied part into an upload that asks for checksums, so such parts
carry none, are named by their ETags alone, and leave nothing composite to
compare.

A multipart upload started by an earlier version takes a SHA-256 per part
(`ChecksumSHA256`), and S3 refuses any other checksum into it
(`InvalidArgument`). A handle knows which its upload takes when the caller
recorded it; otherwise its first part asks S3 (one ListParts, whose answer
names the upload's checksum algorithm), once for all the parts it sends. A
part of such an upload is checked against the CRC32C its caller computed,
then sent with its SHA-256, both computed in one worker-thread job; `complete`
lists each part's SHA-256 and compares the composite SHA-256 S3 reports.

How it fails: as every S3 call does (`s3_calls`): ChecksumMismatch for a part
whose checksum S3 refuses or echoes changed (or, in an upload of SHA-256 parts,
whose bytes do not have the CRC32C given), MultipartUploadMissing when the
upload no longer exists, StorageError otherwise. An object S3 assembled from
other parts than the ones completed is deleted and raises ChecksumMismatch.
Aborting an upload that no longer exists is not an error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import ClientError

from infra.checksums import composite_crc32c, composite_sha256, crc32c_b64, sha256_b64
from ingest.adapters.s3_calls import S3Calls, check_echoed_checksum, error_code
from ingest.errors import ChecksumMismatch, IngestError, StorageError
from ingest.ports import PartChecksum, StoredObject, StoredPart

log = logging.getLogger(__name__)


class S3MultipartUpload:
    """One open multipart upload; parts may be uploaded concurrently, in any order."""

    def __init__(
        self,
        client: Any,
        calls: S3Calls,
        key: str,
        upload_id: str,
        part_checksum: PartChecksum | None,
    ) -> None:
        """`part_checksum`: what the upload's parts carry; None to ask S3 at the first part."""
        self._client = client
        self._calls = calls
        self._key = key
        self._upload_id = upload_id
        self._part_checksum = part_checksum
        self._asking = asyncio.Lock()

    @property
    def key(self) -> str:
        return self._key

    @property
    def upload_id(self) -> str:
        return self._upload_id

    async def upload_part(self, number: int, data: bytes, crc32c_b64: str) -> StoredPart:
        if await self._carries() == "SHA256":
            return await self._upload_sha256_part(number, data, crc32c_b64)
        etag = await self._send(number, data, "ChecksumCRC32C", crc32c_b64)
        return StoredPart(number=number, etag=etag, size=len(data), crc32c_b64=crc32c_b64)

    async def _upload_sha256_part(self, number: int, data: bytes, crc32c_b64: str) -> StoredPart:
        crc, sha256 = await asyncio.to_thread(_crc32c_and_sha256, data)
        if crc != crc32c_b64:
            # S3 cannot check the CRC32C of this part: it is checked here, before sending.
            raise ChecksumMismatch(
                f"part {number} of {self._key!r} does not have the CRC32C it was given",
                details={
                    "operation": "upload_part",
                    "key": self._key,
                    "part": number,
                    "sent": crc32c_b64,
                    "data": crc,
                },
            )
        etag = await self._send(number, data, "ChecksumSHA256", sha256)
        return StoredPart(
            number=number, etag=etag, size=len(data), crc32c_b64="", sha256_b64=sha256
        )

    async def _send(self, number: int, data: bytes, field: str, checksum: str) -> str:
        """Upload the part with its checksum in `field`; its ETag."""
        async with self._calls.call("upload_part", self._key):
            response = await self._client.upload_part(
                Bucket=self._calls.bucket,
                Key=self._key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=data,
                # The value alone, no ChecksumAlgorithm: botocore would then insist on
                # computing the checksum itself; S3 verifies the header either way.
                **{field: checksum},
            )
        check_echoed_checksum(response, field, checksum, self._key, f"part {number}")
        etag: str = response["ETag"]
        return etag

    async def _carries(self) -> PartChecksum:
        """The checksum the upload's parts carry: as the handle was told, or as S3 says."""
        if self._part_checksum is None:
            async with self._asking:  # one question, whatever the parts in flight
                if self._part_checksum is None:
                    async with self._calls.call("list_parts", self._key):
                        response = await self._client.list_parts(
                            Bucket=self._calls.bucket,
                            Key=self._key,
                            UploadId=self._upload_id,
                            MaxParts=1,
                        )
                    # No algorithm at all (MinIO answers ""), or CRC32C: CRC32C is taken.
                    algorithm = response.get("ChecksumAlgorithm")
                    self._part_checksum = "SHA256" if algorithm == "SHA256" else "CRC32C"
        return self._part_checksum

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
        field, expected = _composite(ordered)
        reported = response.get(field) if field else None
        if expected is not None and reported is not None and reported != expected:
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
    """A part as CompleteMultipartUpload lists it; a copied part has no checksum to list.

    S3 refuses a part of a SHA-256 upload listed without its SHA-256 (`InvalidPart`).
    """
    listed: dict[str, Any] = {"PartNumber": part.number, "ETag": part.etag}
    if part.sha256_b64:
        listed["ChecksumSHA256"] = part.sha256_b64
    elif part.crc32c_b64:
        listed["ChecksumCRC32C"] = part.crc32c_b64
    return listed


def _composite(ordered: Sequence[StoredPart]) -> tuple[str, str | None]:
    """(the field S3 reports the object's checksum in, what it must say), when every part
    carries a checksum of one kind; copied parts carry none: nothing to compare then."""
    if all(part.sha256_b64 for part in ordered):
        return "ChecksumSHA256", composite_sha256(part.sha256_b64 for part in ordered)
    if all(part.crc32c_b64 for part in ordered):
        return "ChecksumCRC32C", composite_crc32c(part.crc32c_b64 for part in ordered)
    return "", None


def _crc32c_and_sha256(data: bytes) -> tuple[str, str]:
    # One worker-thread job: both release the GIL on a part's worth of bytes.
    return crc32c_b64(data), sha256_b64(data)
