"""A tus upload in flight across an upgrade, on the real MinIO and Kafka.

Earlier versions opened a tus upload's multipart upload with SHA-256 part
checksums (`ChecksumAlgorithm=SHA256`, `ChecksumSHA256` on every part); S3
refuses a CRC32C part into such an upload. Here one instance takes the first
part, then its multipart upload is replaced by one made the way an earlier
version made it (SHA-256, the same part already stored) and the session
document is left as that version would have left it (no record of the
checksum). Another instance takes the rest: a tail, then the last parts, and
the upload completes with the file's bytes and one `upload.completed`.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec
import pytest

from infra import layout
from infra.s3 import open_s3, warm_session
from ingest.adapters.s3_documents import S3DocumentStore
from ingest.settings import IngestSettings
from ingest.usecases.sessions import session_key
from schemas import UploadCompleted
from tests.integration.harness import (
    RunningIngest,
    ended,
    events_to_end,
    open_uploads,
    part_sizes,
    running_ingest,
    stored_sha256,
    upload_events,
)
from tests.integration.tus_requests import Source, create_upload, patch_upload
from tests.media import MiB, sha256_of

PART = 5 * MiB
SIZE = 12 * MiB + 4321
USER = "upgrader"


@pytest.fixture
async def pair(settings: IngestSettings) -> AsyncIterator[tuple[RunningIngest, RunningIngest]]:
    """An instance that takes the first part, and one that takes the rest after the upgrade."""
    small_parts = msgspec.structs.replace(settings, part_size=PART)
    first = msgspec.structs.replace(small_parts, instance_id="legacy-before")
    then = msgspec.structs.replace(small_parts, instance_id="legacy-after")
    async with running_ingest(first) as before, running_ingest(then) as after:
        yield before, after


async def test_an_upload_opened_with_sha256_parts_is_finished_after_the_upgrade(
    pair: tuple[RunningIngest, RunningIngest],
    http: aiohttp.ClientSession,
    settings: IngestSettings,
) -> None:
    before, after = pair
    path = await create_upload(http, before, USER, SIZE, "upgraded.mp4")
    upload_id = path.rsplit("/", 1)[-1]
    source = Source(SIZE, seed=41)
    first = source.take(PART)
    response = await patch_upload(http, before, USER, path, 0, first)
    assert response.status == 204, response.status
    key = await _as_an_earlier_version_left_it(settings, upload_id, first)

    offset = PART
    # 3 MiB stay a tail (no part is written); the rest reads it back ahead of the body
    # and writes parts 2 and 3 into the SHA-256 upload, then completes it.
    for size in (3 * MiB, SIZE - 8 * MiB):
        response = await patch_upload(http, after, USER, path, offset, source.take(size))
        assert response.status == 204, (response.status, offset)
        offset += size
        assert int(response.headers["Upload-Offset"]) == offset

    expected = sha256_of(SIZE, seed=41)
    session, _ = await after.services.sessions.load(upload_id)
    assert session.status == "completed"
    assert session.result is not None
    assert session.result.sha256 == expected
    assert await stored_sha256(settings, key) == (expected, SIZE)
    assert await part_sizes(settings, key) == [PART, PART, SIZE - 2 * PART]
    assert await open_uploads(settings, key) == []
    # Completed as the SHA-256 upload it was opened as: S3 reports the composite SHA-256.
    async with open_s3(await warm_session(), settings.s3_endpoint()) as s3:
        head = await s3.head_object(Bucket=settings.s3_bucket, Key=key, ChecksumMode="ENABLED")
    assert str(head.get("ChecksumSHA256", "")).endswith("-3"), head.get("ChecksumSHA256")

    events = await upload_events(settings, upload_id, until=ended)
    assert isinstance(events[-1], UploadCompleted)
    everything = await events_to_end(settings, lambda event: event.upload_id == upload_id)
    completed = [event for event in everything if isinstance(event, UploadCompleted)]
    assert len(completed) == 1
    assert completed[0].sha256 == expected
    assert completed[0].size_bytes == SIZE


async def _as_an_earlier_version_left_it(
    settings: IngestSettings, upload_id: str, first_part: bytes
) -> str:
    """Replace the upload's multipart upload by one made as earlier versions made it, holding
    `first_part`, and point the session document at it as they would have; the object key."""
    async with open_s3(await warm_session(), settings.s3_endpoint()) as s3:
        documents = S3DocumentStore(s3, settings.s3_bucket, prefix=layout.STATE_PREFIX)
        stored = await documents.read(session_key(upload_id))
        assert stored is not None
        document: dict[str, Any] = json.loads(stored.data)
        tus = document["tus"]
        key: str = document["s3_key"]
        bucket = settings.s3_bucket
        assert tus["offset"] == PART, "the first PATCH ends on a part boundary"
        assert tus["tail_segments"] == []
        await s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=tus["multipart_upload_id"])
        created = await s3.create_multipart_upload(
            Bucket=bucket,
            Key=key,
            ChecksumAlgorithm="SHA256",
            ContentType=tus["content_type"],
            Metadata=layout.object_metadata(
                upload_id=upload_id, user_id=document["user_id"], file_format=tus["format"]
            ),
        )
        digest = base64.b64encode(hashlib.sha256(first_part).digest()).decode()
        await s3.upload_part(
            Bucket=bucket,
            Key=key,
            UploadId=created["UploadId"],
            PartNumber=1,
            Body=first_part,
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=digest,
        )
        tus["multipart_upload_id"] = created["UploadId"]
        tus.pop("part_checksum", None)  # earlier versions kept no such record
        await documents.replace(
            session_key(upload_id), json.dumps(document).encode(), version=stored.version
        )
    return key
