"""`infra.objects` on local disk: files copied whole, missing ones refused, documents replaced."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from infra.objects import CHUNK_BYTES, LocalDocuments, LocalObjects, ObjectMissing


@pytest.fixture
def stored(tmp_path: Path) -> bytes:
    data = os.urandom(CHUNK_BYTES * 2 + 123)  # more than one chunk
    (tmp_path / "objects" / "bucket" / "a").mkdir(parents=True)
    (tmp_path / "objects" / "bucket" / "a" / "clip.mp4").write_bytes(data)
    return data


async def test_a_stored_file_is_copied_whole(tmp_path: Path, stored: bytes) -> None:
    objects = LocalObjects(tmp_path / "objects")
    copied = await objects.download("bucket", "a/clip.mp4", tmp_path / "copy")
    assert copied == len(stored)
    assert await asyncio.to_thread((tmp_path / "copy").read_bytes) == stored


@pytest.mark.parametrize("key", ["a/missing.mp4", "a", "../bucket/a/clip.mp4", "a//clip.mp4", ""])
async def test_a_missing_file_or_a_key_outside_the_bucket_is_missing(
    tmp_path: Path, stored: bytes, key: str
) -> None:
    objects = LocalObjects(tmp_path / "objects")
    with pytest.raises(ObjectMissing):
        await objects.download("bucket", key, tmp_path / "copy")
    assert not await asyncio.to_thread((tmp_path / "copy").exists), "no partial file is left"


async def test_documents_are_read_back_and_replaced_whole(tmp_path: Path) -> None:
    documents = LocalDocuments(tmp_path / "state")
    assert await documents.read("detections/u/videos/v.json") is None
    await documents.write("detections/u/videos/v.json", b'{"a": 1}')
    await documents.write("detections/u/videos/v.json", b'{"a": 2}')
    assert await documents.read("detections/u/videos/v.json") == b'{"a": 2}'
    assert await asyncio.to_thread(os.listdir, tmp_path / "state" / ".tmp") == []
    with pytest.raises(ObjectMissing):
        await documents.write("../escape.json", b"{}")
