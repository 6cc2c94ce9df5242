"""`infra.s3_objects` against the real MinIO: files streamed to disk, documents, missing keys."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from infra.objects import CHUNK_BYTES, ObjectMissing
from infra.s3 import open_s3_client
from infra.s3_objects import S3Documents, S3Objects
from ingest.settings import IngestSettings


async def test_files_and_documents_round_trip_and_missing_keys_are_told_apart(
    settings: IngestSettings, tmp_path: Path
) -> None:
    data = os.urandom(CHUNK_BYTES * 3 + 5)
    async with open_s3_client(settings.s3_endpoint()) as s3:
        await s3.put_object(Bucket=settings.s3_bucket, Key="objects-test/clip.mp4", Body=data)
        objects = S3Objects(s3)
        copied = await objects.download(settings.s3_bucket, "objects-test/clip.mp4", tmp_path / "c")
        assert copied == len(data)
        assert await asyncio.to_thread((tmp_path / "c").read_bytes) == data
        with pytest.raises(ObjectMissing):
            await objects.download(settings.s3_bucket, "objects-test/none", tmp_path / "d")
        assert not await asyncio.to_thread((tmp_path / "d").exists)
        documents = S3Documents(s3, settings.s3_bucket)
        assert await documents.read("detections/test/doc.json") is None
        await documents.write("detections/test/doc.json", b'{"status": "pending"}')
        assert await documents.read("detections/test/doc.json") == b'{"status": "pending"}'
        stored = await s3.get_object(
            Bucket=settings.s3_bucket, Key="_ingest/detections/test/doc.json"
        )
        async with stored["Body"] as body:
            assert await body.read() == b'{"status": "pending"}'
