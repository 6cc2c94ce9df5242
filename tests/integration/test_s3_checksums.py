"""The S3 server really verifies the checksums the write path relies on: each part's CRC32C
(sent as the adapter sends it, the value alone), the composite it reports for the object,
and a whole object's SHA-256; and an upload opened with SHA-256 part checksums (as earlier
versions opened them) takes only SHA-256 parts, says so when its parts are listed, and
must list them at completion."""

from __future__ import annotations

import base64
import hashlib
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from infra.checksums import composite_crc32c, composite_sha256, crc32c_b64
from infra.s3 import open_s3, warm_session
from ingest.settings import IngestSettings

MiB = 1024 * 1024
CHECKSUM_REFUSALS = {"BadDigest", "XAmzContentChecksumMismatch", "InvalidDigest"}


def _sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


@pytest.fixture
async def s3(settings: IngestSettings) -> AsyncIterator[Any]:
    session = await warm_session()
    async with open_s3(session, settings.s3_endpoint()) as client:
        yield client


async def test_three_part_upload_with_crc32c_checksums_completes(
    s3: Any, settings: IngestSettings
) -> None:
    rng = random.Random(7)
    parts = [rng.randbytes(5 * MiB), rng.randbytes(5 * MiB), rng.randbytes(MiB + 17)]
    key = "checksums/three-parts.bin"
    created = await s3.create_multipart_upload(
        Bucket=settings.s3_bucket, Key=key, ChecksumAlgorithm="CRC32C"
    )
    upload_id = created["UploadId"]
    completed_parts = []
    for number, body in enumerate(parts, start=1):
        response = await s3.upload_part(
            Bucket=settings.s3_bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=body,
            ChecksumCRC32C=crc32c_b64(body),
        )
        assert response["ChecksumCRC32C"] == crc32c_b64(body)
        completed_parts.append(
            {"PartNumber": number, "ETag": response["ETag"], "ChecksumCRC32C": crc32c_b64(body)}
        )
    completed = await s3.complete_multipart_upload(
        Bucket=settings.s3_bucket,
        Key=key,
        UploadId=upload_id,
        MultipartUpload={"Parts": completed_parts},
    )
    assert completed["ChecksumCRC32C"] == composite_crc32c(crc32c_b64(body) for body in parts)

    stored = await s3.get_object(Bucket=settings.s3_bucket, Key=key)
    async with stored["Body"] as body:
        data = await body.read()
    assert hashlib.sha256(data).digest() == hashlib.sha256(b"".join(parts)).digest()
    remaining = await s3.list_multipart_uploads(Bucket=settings.s3_bucket, Prefix=key)
    assert remaining.get("Uploads", []) == []
    await s3.delete_object(Bucket=settings.s3_bucket, Key=key)


async def test_part_with_wrong_checksum_is_refused(s3: Any, settings: IngestSettings) -> None:
    key = "checksums/wrong.bin"
    created = await s3.create_multipart_upload(
        Bucket=settings.s3_bucket, Key=key, ChecksumAlgorithm="CRC32C"
    )
    upload_id = created["UploadId"]
    body = random.Random(8).randbytes(MiB)
    corrupted = bytearray(body)
    corrupted[MiB // 2] ^= 0x01  # one bit flipped on the way
    try:
        with pytest.raises(ClientError) as refused:
            await s3.upload_part(
                Bucket=settings.s3_bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=1,
                Body=bytes(corrupted),
                ChecksumCRC32C=crc32c_b64(body),
            )
        assert refused.value.response["Error"]["Code"] in CHECKSUM_REFUSALS
        listed = await s3.list_parts(Bucket=settings.s3_bucket, Key=key, UploadId=upload_id)
        assert listed.get("Parts", []) == []
    finally:
        await s3.abort_multipart_upload(Bucket=settings.s3_bucket, Key=key, UploadId=upload_id)


async def test_whole_object_with_wrong_sha256_is_refused(s3: Any, settings: IngestSettings) -> None:
    key = "checksums/wrong-whole.bin"
    body = random.Random(9).randbytes(MiB)
    with pytest.raises(ClientError) as refused:
        await s3.put_object(
            Bucket=settings.s3_bucket,
            Key=key,
            Body=body,
            ChecksumSHA256=_sha256_b64(body + b"tampered"),
        )
    assert refused.value.response["Error"]["Code"] in CHECKSUM_REFUSALS
    with pytest.raises(ClientError):
        await s3.head_object(Bucket=settings.s3_bucket, Key=key)


async def test_an_upload_of_sha256_parts_refuses_crc32c_ones_and_needs_its_parts_listed(
    s3: Any, settings: IngestSettings
) -> None:
    """What resuming an earlier version's upload relies on (MinIO's codes; AWS words the
    same refusals as InvalidRequest)."""
    bucket, key = settings.s3_bucket, "checksums/earlier-sha256.bin"
    created = await s3.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm="SHA256")
    upload_id = created["UploadId"]
    rng = random.Random(10)
    first, last = rng.randbytes(5 * MiB), rng.randbytes(MiB)
    try:
        listed = await s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id, MaxParts=1)
        assert listed["ChecksumAlgorithm"] == "SHA256"  # named before any part is stored
        with pytest.raises(ClientError) as refused:
            await s3.upload_part(
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=1,
                Body=first,
                ChecksumCRC32C=crc32c_b64(first),
            )
        assert refused.value.response["Error"]["Code"] in {"InvalidArgument", "InvalidRequest"}
        parts = []
        for number, body in enumerate([first, last], start=1):
            response = await s3.upload_part(
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=body,
                ChecksumSHA256=_sha256_b64(body),
            )
            parts.append({"PartNumber": number, "ETag": response["ETag"]})
        with pytest.raises(ClientError) as unlisted:
            await s3.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        assert unlisted.value.response["Error"]["Code"] in {"InvalidPart", "InvalidRequest"}
        for part, body in zip(parts, [first, last], strict=True):
            part["ChecksumSHA256"] = _sha256_b64(body)
        completed = await s3.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
        assert completed["ChecksumSHA256"] == composite_sha256(
            _sha256_b64(body) for body in [first, last]
        )
    finally:
        await s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    await s3.delete_object(Bucket=bucket, Key=key)
