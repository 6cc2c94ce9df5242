"""The part checksum a tus upload's multipart upload takes, across an upgrade, on the fakes.

A new upload records that its parts carry a CRC32C and resumes with that record,
so no PATCH has to ask the store. A document an earlier version wrote has no
such record and its multipart upload may take SHA-256 parts: it is resumed
without one (the store finds out) and completes with the file's bytes.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from infra.checksums import crc32c_b64
from ingest.usecases.sessions import session_key
from schemas import UploadCompleted
from tests.fakes import video_bytes
from tests.unit.test_tus_support import PART, ClientFactory, Instance, TusRig, create, send


@pytest.fixture
async def nodes(rig: TusRig, aiohttp_client: ClientFactory) -> tuple[Instance, Instance]:
    return await rig.instance(aiohttp_client, "a"), await rig.instance(aiohttp_client, "b")


async def _two_parts_sent(node: Instance, data: bytes) -> tuple[str, int]:
    """A new upload of `data` whose first two parts `node` took: its id and offset."""
    upload_id = await create(node.client, len(data))
    return upload_id, await send(node.client, upload_id, 0, data[: 2 * PART])


async def test_a_new_upload_records_crc32c_parts_and_resumes_with_that_record(
    rig: TusRig, nodes: tuple[Instance, Instance]
) -> None:
    data = video_bytes(4 * PART + 10, seed=61)
    upload_id, offset = await _two_parts_sent(nodes[0], data)
    state = (await rig.session(upload_id)).state
    assert state.part_checksum == "CRC32C"

    await send(nodes[1].client, upload_id, offset, data[offset:])

    (upload,) = rig.store.uploads
    assert upload.part_checksum == "CRC32C"
    assert rig.store.resumed
    assert {told for _, told in rig.store.resumed} == {"CRC32C"}
    assert rig.store.objects[(await rig.session(upload_id)).s3_key] == data


async def test_an_earlier_versions_upload_of_sha256_parts_is_finished_without_a_record(
    rig: TusRig, nodes: tuple[Instance, Instance]
) -> None:
    data = video_bytes(5 * PART + 321, seed=62)
    upload_id, offset = await _two_parts_sent(nodes[0], data)
    await _as_an_earlier_version_left_it(rig, upload_id, data[:offset])

    after = nodes[1].client
    offset = await send(after, upload_id, offset, data[offset : offset + PART // 2])
    offset = await send(after, upload_id, offset, data[offset:])

    assert offset == len(data)
    session = await rig.session(upload_id)
    assert session.status == "completed"
    assert session.result is not None
    assert session.result.sha256 == hashlib.sha256(data).hexdigest()
    assert rig.store.objects[session.s3_key] == data
    earlier = rig.store.uploads[-1]
    assert earlier.state == "completed"
    assert [part.sha256_b64 != "" for part in earlier.completed_parts] == [True] * 6
    assert [part.crc32c_b64 for part in earlier.completed_parts] == [""] * 6
    resumed = {told for upload, told in rig.store.resumed if upload == earlier.upload_id}
    assert resumed == {None}, "an upload with no record is resumed without one"
    completed = [e for e in rig.events(upload_id) if isinstance(e, UploadCompleted)]
    assert len(completed) == 1


async def _as_an_earlier_version_left_it(rig: TusRig, upload_id: str, stored: bytes) -> None:
    """Swap the upload's multipart upload for one opened with SHA-256 parts holding the parts
    `stored` fills, and drop the document's record of the checksum, as earlier versions
    wrote it."""
    session = await rig.session(upload_id)
    current = session.state.multipart_upload_id
    assert current is not None
    await rig.store.resume_multipart(session.s3_key, current).abort()
    earlier = await rig.store.start_multipart(
        session.s3_key, content_type="video/mp4", metadata={}, part_checksum="SHA256"
    )
    for number, start in enumerate(range(0, len(stored), PART), start=1):
        part = stored[start : start + PART]
        await earlier.upload_part(number, part, crc32c_b64(part))
    key = session_key(upload_id)
    document = await rig.documents.read(key)
    assert document is not None
    raw = json.loads(document.data)
    raw["tus"]["multipart_upload_id"] = earlier.upload_id
    del raw["tus"]["part_checksum"]
    await rig.documents.replace(key, json.dumps(raw).encode(), version=document.version)
    rig.store.resumed.clear()
