"""tuspy (the tus project's Python client) against a real ingest server on MinIO and Kafka.

tuspy sends a 100 MiB file in 7 MiB PATCHes, each with an `Upload-Checksum: sha1 ...`
header (its `upload_checksum=True`): the stored object holds the file, and every S3
part but the last has the configured part size, whatever the client's chunk size. A
chunk whose checksum is wrong is refused with the checksum extension's 460, offset
unchanged. tuspy is synchronous (requests): it runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from tusclient.client import TusClient
from tusclient.exceptions import TusUploadFailed
from tusclient.uploader.uploader import Uploader

from ingest.settings import IngestSettings
from tests.integration.harness import RunningIngest, part_sizes, stored_sha256
from tests.media import MiB, write_fake_video

if TYPE_CHECKING:
    from _hashlib import HASH

SIZE = 100 * MiB
CHUNK = 7 * MiB


def _sha1_of_other_bytes(chunk: bytes) -> HASH:
    return hashlib.sha1(b"not " + chunk)


class WrongChecksumUploader(Uploader):
    """Sends an Upload-Checksum that names sha1 but is the digest of other bytes."""

    # tuspy types the pair with hashlib.sha1 itself; any callable returning a hash works.
    CHECKSUM_ALGORITHM_PAIR = ("sha1", _sha1_of_other_bytes)  # type: ignore[assignment]


def _upload(build: Callable[[], Uploader]) -> Uploader:
    """Build (it reads the file's size) and run an uploader: in a worker thread."""
    uploader = build()
    uploader.upload()
    return uploader


def _sha1_from(file: Path, offset: int) -> str:
    with file.open("rb") as source:
        source.seek(offset)
        return base64.b64encode(hashlib.sha1(source.read()).digest()).decode()


async def _session(ingest: RunningIngest, url: str) -> Any:
    session, _ = await ingest.services.sessions.load(url.rsplit("/", 1)[-1])
    return session


async def test_chunks_with_checksums_become_parts_of_the_configured_size(
    ingest: RunningIngest, settings: IngestSettings, tmp_path: Path
) -> None:
    file = tmp_path / "big.mp4"
    sha256 = await asyncio.to_thread(write_fake_video, file, SIZE, seed=71)
    client = TusClient(f"{ingest.url}/v1/tus/", headers=ingest.auth("tuspy"))
    uploader = await asyncio.to_thread(
        _upload,
        lambda: client.uploader(
            str(file), chunk_size=CHUNK, upload_checksum=True, metadata={"filename": file.name}
        ),
    )
    # tuspy did send checksums: the last PATCH's header is the sha1 of the last chunk.
    assert uploader.request is not None
    sent = uploader.request._request_headers["upload-checksum"]
    assert sent == f"sha1 {await asyncio.to_thread(_sha1_from, file, SIZE // CHUNK * CHUNK)}"

    session = await _session(ingest, str(uploader.url))
    assert session.status == "completed"
    assert await stored_sha256(settings, session.s3_key) == (sha256, SIZE)
    part = settings.part_size
    sizes = await part_sizes(settings, session.s3_key)
    assert sizes[:-1] == [part] * (len(sizes) - 1)
    assert sum(sizes) == SIZE
    assert 0 < sizes[-1] <= part


async def test_a_chunk_with_a_wrong_checksum_is_refused_with_460(
    ingest: RunningIngest, tmp_path: Path
) -> None:
    file = tmp_path / "small.mp4"
    await asyncio.to_thread(write_fake_video, file, 2 * MiB, seed=72)
    client = TusClient(f"{ingest.url}/v1/tus/", headers=ingest.auth("tuspy"))
    uploaders: list[Uploader] = []

    def build() -> Uploader:
        uploaders.append(
            WrongChecksumUploader(str(file), client=client, chunk_size=MiB, upload_checksum=True)
        )
        return uploaders[0]

    with pytest.raises(TusUploadFailed) as refused:
        await asyncio.to_thread(_upload, build)
    assert refused.value.status_code == 460
    assert uploaders[0].url is not None
    assert await asyncio.to_thread(uploaders[0].get_offset) == 0
