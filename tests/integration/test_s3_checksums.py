"""The S3 server really verifies per-part SHA-256 checksums, which the write path relies on."""

from __future__ import annotations

import base64
import hashlib
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from infra.s3 import open_s3, warm_session
from ingest.settings import IngestSettings

MiB = 1024 * 1024


def _sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


@pytest.fixture
async def s3(settings: IngestSettings) -> AsyncIterator[Any]:
    session = await warm_session()
    async with open_s3(session, settings.s3_endpoint()) as client:
        yield client


async def test_three_part_upload_with_sha256_checksums_completes(
    s3: Any, settings: IngestSettings
) -> None:
    rng = random.Random(7)
    parts = [rng.randbytes(5 * MiB), rng.randbytes(5 * MiB), rng.randbytes(MiB + 17)]
    key = "checksums/three-parts.bin"
    created = await s3.create_multipart_upload(
        Bucket=settings.s3_bucket, Key=key, ChecksumAlgorithm="SHA256"
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
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=_sha256_b64(body),
        )
        assert response["ChecksumSHA256"] == _sha256_b64(body)
        completed_parts.append(
            {"PartNumber": number, "ETag": response["ETag"], "ChecksumSHA256": _sha256_b64(body)}
        )
    await s3.complete_multipart_upload(
        Bucket=settings.s3_bucket,
        Key=key,
        UploadId=upload_id,
        MultipartUpload={"Parts": completed_parts},
    )

    stored = await s3.get_object(Bucket=settings.s3_bucket, Key=key)
    async with stored["Body"] as body:
        data = await body.read()
    assert hashlib.sha256(data).digest() == hashlib.sha256(b"".join(parts)).digest()
    remaining = await s3.list_multipart_uploads(Bucket=settings.s3_bucket, Prefix=key)
    assert remaining.get("Uploads", []) == []


async def test_part_with_wrong_checksum_is_refused(s3: Any, settings: IngestSettings) -> None:
    key = "checksums/wrong.bin"
    created = await s3.create_multipart_upload(
        Bucket=settings.s3_bucket, Key=key, ChecksumAlgorithm="SHA256"
    )
    upload_id = created["UploadId"]
    body = random.Random(8).randbytes(MiB)
    try:
        with pytest.raises(ClientError) as refused:
            await s3.upload_part(
                Bucket=settings.s3_bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=1,
                Body=body,
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=_sha256_b64(body + b"tampered"),
            )
        assert refused.value.response["Error"]["Code"] in {
            "BadDigest",
            "XAmzContentChecksumMismatch",
            "InvalidDigest",
        }
        listed = await s3.list_parts(Bucket=settings.s3_bucket, Key=key, UploadId=upload_id)
        assert listed.get("Parts", []) == []
    finally:
        await s3.abort_multipart_upload(Bucket=settings.s3_bucket, Key=key, UploadId=upload_id)
