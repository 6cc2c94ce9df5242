"""Resuming tus uploads across requests and instances, against the in-memory fakes.

Fixed-size parts whatever the PATCH sizes, the tail between requests, events
numbered across instances, what a broken request keeps, the lease that lets one
request write at a time, and a cancel or a shutdown reaching a running PATCH.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import random
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from ingest.auth import Principal
from ingest.errors import ChecksumMismatch, ClientDisconnected, StorageError, TooLarge
from ingest.usecases.tus.lease import LeaseTimes
from ingest.usecases.tus.protocol import Checksum, PatchRequest
from ingest.usecases.tus.state import TusSession, with_state
from schemas import UploadCancelled, UploadCompleted, UploadProgress, UploadStarted
from tests.fakes import ScriptedBody, video_bytes
from tests.unit.test_tus_support import (
    PART,
    ClientFactory,
    Instance,
    TusRig,
    auth,
    create,
    head_offset,
    patch_headers,
    send,
)

ANN = Principal("ann", frozenset())


@pytest.fixture
def rig() -> TusRig:
    return TusRig()


@pytest.fixture
async def nodes(rig: TusRig, aiohttp_client: ClientFactory) -> tuple[Instance, Instance]:
    return await rig.instance(aiohttp_client, "a"), await rig.instance(aiohttp_client, "b")


def _sizes(total: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    sizes: list[int] = []
    while sum(sizes) < total:
        sizes.append(min(rng.choice([1, 7, 100, PART - 1, PART, PART + 1, 3 * PART + 5]), total))
        sizes[-1] = min(sizes[-1], total - sum(sizes[:-1]))
    return sizes


async def test_patches_of_odd_sizes_through_two_instances_make_fixed_parts_and_one_history(
    rig: TusRig, nodes: tuple[Instance, Instance]
) -> None:
    data = video_bytes(9 * PART + 333, seed=5)
    upload_id = await create(nodes[0].client, len(data))
    offset = 0
    for index, size in enumerate(_sizes(len(data), seed=3)):
        node = nodes[index % 2]
        offset = await send(node.client, upload_id, offset, data[offset : offset + size])
    assert offset == len(data)

    session = await rig.session(upload_id)
    assert session.status == "completed"
    assert session.result is not None
    assert session.result.sha256 == hashlib.sha256(data).hexdigest()
    assert rig.store.objects[session.s3_key] == data
    (upload,) = rig.store.uploads
    assert [p.size for p in upload.completed_parts] == [PART] * 9 + [333]
    assert not [key for key in rig.store.objects if key.startswith("_ingest/tus/")]

    events = rig.events(upload_id)
    sequences = [e.sequence for e in events]
    assert sequences == sorted(set(sequences)), "one strictly increasing sequence"
    assert isinstance(events[0], UploadStarted)
    completed = events[-1]
    assert isinstance(completed, UploadCompleted)
    assert completed.sha256 == hashlib.sha256(data).hexdigest()
    assert completed.size_bytes == len(data)
    assert completed.parts == 10
    assert completed.protocol == "tus"
    assert completed.format == "mp4"
    progress = [e for e in events if isinstance(e, UploadProgress)]
    assert len(progress) >= 10  # at least one per stored part
    assert [p.bytes_received for p in progress] == sorted(p.bytes_received for p in progress)
    assert progress[-1].percentage == 100.0


async def test_patches_of_odd_sizes_on_one_instance_carry_the_hash_on_without_a_read_back(
    rig: TusRig, nodes: tuple[Instance, Instance], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parts that start with a tail read back, tails appended to, a last short part: the
    file's SHA-256 is carried from PATCH to PATCH, never computed from the stored object."""
    data = video_bytes(5 * PART + 77, seed=11)
    upload_id = await create(nodes[0].client, len(data))

    def no_read_back(key: str) -> None:
        raise AssertionError(f"{key} was read back: the running hash was not carried on")

    monkeypatch.setattr(rig.store, "read_object", no_read_back)
    offset = 0
    for size in _sizes(len(data), seed=4):
        offset = await send(nodes[0].client, upload_id, offset, data[offset : offset + size])
    assert offset == len(data)
    session = await rig.session(upload_id)
    assert session.result is not None
    assert session.result.sha256 == hashlib.sha256(data).hexdigest()
    assert rig.store.objects[session.s3_key] == data


async def test_the_same_file_uploaded_again_is_a_duplicate(
    rig: TusRig, nodes: tuple[Instance, Instance]
) -> None:
    data = video_bytes(2 * PART + 9, seed=8)
    first = await create(nodes[0].client, len(data))
    await send(nodes[0].client, first, 0, data)
    second = await create(nodes[1].client, len(data))
    await send(nodes[1].client, second, 0, data)
    earlier = (await rig.session(first)).result
    later = (await rig.session(second)).result
    assert earlier is not None
    assert later is not None
    assert later.duplicate_of == earlier.video_id


async def test_a_client_gone_mid_patch_keeps_what_arrived(
    rig: TusRig, nodes: tuple[Instance, Instance]
) -> None:
    data = video_bytes(6 * PART, seed=2)
    upload_id = await create(nodes[0].client, len(data))
    body = ScriptedBody(data[: 2 * PART + 500], chunk=300, then=ConnectionResetError("gone"))
    with pytest.raises(ClientDisconnected):
        await nodes[0].tus.patch(upload_id, ANN, PatchRequest(offset=0), body.chunks())

    offset = await head_offset(nodes[1].client, upload_id)
    assert offset == 2 * PART + 500
    tail = f"_ingest/tus/{upload_id}/tail-{2 * PART}-{offset}"
    assert rig.store.objects[tail] == data[2 * PART : offset]
    assert await send(nodes[1].client, upload_id, offset, data[offset:]) == len(data)
    session = await rig.session(upload_id)
    assert rig.store.objects[session.s3_key] == data


async def test_a_client_gone_mid_patch_with_a_checksum_keeps_nothing(
    rig: TusRig, nodes: tuple[Instance, Instance]
) -> None:
    data = video_bytes(6 * PART, seed=2)
    upload_id = await create(nodes[0].client, len(data))
    body = ScriptedBody(data[: 3 * PART], chunk=300, then=ConnectionResetError("gone"))
    request = PatchRequest(offset=0, checksum=Checksum("sha256", hashlib.sha256(data).digest()))
    with pytest.raises(ClientDisconnected):
        await nodes[0].tus.patch(upload_id, ANN, request, body.chunks())
    assert await head_offset(nodes[1].client, upload_id) == 0
    assert not [key for key in rig.store.objects if key.startswith("_ingest/tus/")]


async def test_a_checksum_mismatch_keeps_the_offset_and_the_committed_tail(
    rig: TusRig, nodes: tuple[Instance, Instance]
) -> None:
    data = video_bytes(6 * PART, seed=4)
    upload_id = await create(nodes[0].client, len(data))
    await send(nodes[0].client, upload_id, 0, data[:700])
    wrong = PatchRequest(offset=700, checksum=Checksum("sha1", hashlib.sha1(b"other").digest()))
    with pytest.raises(ChecksumMismatch):
        await nodes[1].tus.patch(upload_id, ANN, wrong, ScriptedBody(data[700:4000]).chunks())
    assert await head_offset(nodes[0].client, upload_id) == 700
    assert rig.store.objects[f"_ingest/tus/{upload_id}/tail-0-700"] == data[:700]
    # Parts the rejected request wrote are rewritten by the next one, offsets decide.
    assert await send(nodes[1].client, upload_id, 700, data[700:]) == len(data)
    assert rig.store.objects[(await rig.session(upload_id)).s3_key] == data


async def test_bytes_past_the_length_keep_what_came_before_and_complete_on_head(
    rig: TusRig, nodes: tuple[Instance, Instance]
) -> None:
    data = video_bytes(3000, seed=6)
    upload_id = await create(nodes[0].client, len(data))
    body = ScriptedBody(data + b"extra bytes", chunk=500)
    with pytest.raises(TooLarge):
        await nodes[0].tus.patch(upload_id, ANN, PatchRequest(offset=0), body.chunks())
    # Every byte of the file arrived before the one too many: HEAD finds it complete.
    assert await head_offset(nodes[1].client, upload_id) == 3000
    session = await rig.session(upload_id)
    assert session.status == "completed"
    assert rig.store.objects[session.s3_key] == data


async def test_a_part_that_cannot_be_stored_keeps_the_parts_before_it(
    rig: TusRig, nodes: tuple[Instance, Instance]
) -> None:
    data = video_bytes(8 * PART, seed=7)
    upload_id = await create(nodes[0].client, len(data))
    rig.store.fail_parts[4] = StorageError("S3 answered 503")
    with pytest.raises(StorageError):
        await nodes[0].tus.patch(
            upload_id, ANN, PatchRequest(offset=0), ScriptedBody(data, chunk=PART).chunks()
        )
    offset = await head_offset(nodes[0].client, upload_id)
    assert offset == 3 * PART
    rig.store.fail_parts.clear()
    assert await send(nodes[1].client, upload_id, offset, data[offset:]) == len(data)
    assert rig.store.objects[(await rig.session(upload_id)).s3_key] == data


class Stalling:
    """A request body that sends `data`, then waits until released (a client gone quiet)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.sent = asyncio.Event()
        self.release = asyncio.Event()

    async def chunks(self) -> AsyncIterator[bytes]:
        for at in range(0, len(self.data), 512):
            yield self.data[at : at + 512]
        self.sent.set()
        await self.release.wait()


async def _until(condition: Any, within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not condition():
            await asyncio.sleep(0.01)


async def test_a_cancel_from_another_instance_stops_a_running_patch(
    rig: TusRig, nodes: tuple[Instance, Instance]
) -> None:
    data = video_bytes(8 * PART, seed=9)
    upload_id = await create(nodes[0].client, len(data))
    body = Stalling(data[: 3 * PART + 10])
    patching = asyncio.create_task(
        nodes[0].client.patch(f"/v1/tus/{upload_id}", data=body.chunks(), headers=patch_headers(0))
    )
    await body.sent.wait()
    await _until(lambda: rig.store.parts_held() == 3)

    response = await nodes[1].client.delete(f"/v1/uploads/{upload_id}", headers=auth())
    assert response.status == 204
    answered = await asyncio.wait_for(patching, 5)
    assert answered.status == 410
    assert rig.store.open_uploads == []
    assert rig.store.parts_held() == 0
    cancelled = [e for e in rig.events(upload_id) if isinstance(e, UploadCancelled)]
    assert len(cancelled) == 1
    sequences = [e.sequence for e in rig.events(upload_id)]
    assert sequences == sorted(set(sequences))
    assert (await rig.session(upload_id)).status == "cancelled"
    body.release.set()


async def test_a_second_request_takes_over_from_one_still_reading_a_dead_connection(
    rig: TusRig, nodes: tuple[Instance, Instance]
) -> None:
    data = video_bytes(8 * PART, seed=10)
    upload_id = await create(nodes[0].client, len(data))
    body = Stalling(data[: 2 * PART + 100])
    first = asyncio.create_task(
        nodes[0].client.patch(f"/v1/tus/{upload_id}", data=body.chunks(), headers=patch_headers(0))
    )
    await body.sent.wait()
    await _until(lambda: rig.store.parts_held() == 2)

    # The client reconnects elsewhere; its HEAD still sees 0, its PATCH from 0 makes the
    # first request let go, which commits what it has: the offset moved, hence 409.
    assert await head_offset(nodes[1].client, upload_id) == 0
    retry = await nodes[1].client.patch(f"/v1/tus/{upload_id}", data=data, headers=patch_headers(0))
    assert retry.status == 409
    saved = (await first).status
    assert saved == 204
    offset = await head_offset(nodes[1].client, upload_id)
    assert offset == 2 * PART + 100
    assert await send(nodes[1].client, upload_id, offset, data[offset:]) == len(data)
    assert rig.store.objects[(await rig.session(upload_id)).s3_key] == data
    sequences = [e.sequence for e in rig.events(upload_id)]
    assert sequences == sorted(set(sequences))
    body.release.set()


async def test_a_lease_left_by_a_dead_instance_is_taken_over_once_it_lapses(
    rig: TusRig, nodes: tuple[Instance, Instance]
) -> None:
    data = video_bytes(3 * PART, seed=11)
    upload_id = await create(nodes[0].client, len(data))
    held = await _hold_lease(rig, nodes[0], upload_id)
    rig.clock.advance(rig.lease.lease_seconds + 1)  # the holder never renewed it
    assert await send(nodes[1].client, upload_id, 0, data) == len(data)
    events = rig.events(upload_id)
    assert events[0].sequence >= held + 100_000 - 1


async def test_a_writer_that_does_not_answer_is_taken_over_long_before_its_lease_lapses(
    rig: TusRig, aiohttp_client: ClientFactory
) -> None:
    rig.lease = LeaseTimes(
        lease_seconds=30.0, poll_seconds=0.02, wait_seconds=5.0, takeover_seconds=0.3
    )
    a, b = await rig.instance(aiohttp_client, "a"), await rig.instance(aiohttp_client, "b")
    data = video_bytes(3 * PART, seed=4)
    upload_id = await create(a.client, len(data))
    held = await _hold_lease(rig, a, upload_id)  # a request on an instance killed since

    started = asyncio.get_running_loop().time()
    assert await send(b.client, upload_id, 0, data) == len(data)
    took = asyncio.get_running_loop().time() - started
    assert took < 3.0, "taken over within seconds, not when the 30 s lease lapses"
    assert (await rig.session(upload_id)).status == "completed"
    assert rig.events(upload_id)[0].sequence >= held + 100_000 - 1


async def test_a_writer_that_acknowledged_but_does_not_let_go_gets_409_never_423(
    rig: TusRig, aiohttp_client: ClientFactory
) -> None:
    rig.lease = LeaseTimes(
        lease_seconds=30.0, poll_seconds=0.02, wait_seconds=0.3, takeover_seconds=0.05
    )
    node = await rig.instance(aiohttp_client)
    upload_id = await create(node.client, 3 * PART)
    await _hold_lease(rig, node, upload_id)

    def saving(session: TusSession) -> TusSession:
        lease = session.state.lease
        assert lease is not None
        acked = msgspec.structs.replace(lease, release_requested=True, release_acknowledged=True)
        return with_state(session, lease=acked)

    await node.tus.sessions.mutate(upload_id, saving)
    response = await node.client.patch(
        f"/v1/tus/{upload_id}", data=video_bytes(100), headers=patch_headers(0)
    )
    assert response.status == 409
    assert response.headers["Tus-Resumable"] == "1.0.0"
    assert (await response.json())["error_code"] == "UPLOAD_LOCKED"


async def _hold_lease(rig: TusRig, node: Instance, upload_id: str) -> int:
    """Take the upload's lease as a request on an instance that then dies would; its sequence."""
    from ingest.usecases.tus.lease import acquire

    held = await acquire(
        node.tus.sessions,
        upload_id,
        ANN,
        admit=lambda session: session,
        instance_id="dead",
        times=rig.lease,
        clock=rig.clock,
    )
    return held.first_sequence


async def test_a_shutdown_lets_a_running_patch_commit_what_it_has(
    rig: TusRig, nodes: tuple[Instance, Instance]
) -> None:
    data = video_bytes(8 * PART, seed=12)
    upload_id = await create(nodes[0].client, len(data))
    body = Stalling(data[: 3 * PART + 50])
    patching = asyncio.create_task(
        nodes[0].client.patch(f"/v1/tus/{upload_id}", data=body.chunks(), headers=patch_headers(0))
    )
    await body.sent.wait()
    await _until(lambda: rig.store.parts_held() == 3)
    await _until(lambda: len(nodes[0].services.active) == 1)

    stopped = await nodes[0].services.active.drain(0)
    assert stopped == 1
    response = await asyncio.wait_for(patching, 5)
    assert response.status == 204
    assert response.headers["Upload-Offset"] == str(3 * PART + 50)
    assert await send(nodes[1].client, upload_id, 3 * PART + 50, data[3 * PART + 50 :]) == len(data)
    body.release.set()


async def test_a_one_shot_put_cannot_claim_a_tus_upload(
    nodes: tuple[Instance, Instance],
) -> None:
    upload_id = await create(nodes[0].client, 2000)
    response = await nodes[0].client.put(
        f"/v1/uploads/{upload_id}", data=video_bytes(2000), headers=auth()
    )
    assert response.status == 409
    listed = await (await nodes[1].client.get("/v1/uploads", headers=auth())).json()
    assert [s["session_id"] for s in listed["sessions"]] == [upload_id]


async def test_patches_on_one_instance_carry_the_sha256_instead_of_reading_back(
    rig: TusRig, nodes: tuple[Instance, Instance]
) -> None:
    data = video_bytes(4 * PART + 77, seed=11)
    upload_id = await create(nodes[0].client, len(data))
    offset = 0
    for size in (PART - 1, 5, 2 * PART, PART + 73):
        offset = await send(nodes[0].client, upload_id, offset, data[offset : offset + size])

    session = await rig.session(upload_id)
    assert session.result is not None
    assert session.result.sha256 == hashlib.sha256(data).hexdigest()
    assert rig.store.objects_read == []
    assert len(nodes[0].tus.running) == 0, "a completed upload keeps no hash"


async def test_a_patch_on_another_instance_falls_back_to_one_read_back(
    rig: TusRig, nodes: tuple[Instance, Instance]
) -> None:
    data = video_bytes(3 * PART + 5, seed=12)
    upload_id = await create(nodes[0].client, len(data))
    offset = await send(nodes[0].client, upload_id, 0, data[:PART])
    offset = await send(nodes[1].client, upload_id, offset, data[offset : 2 * PART])
    offset = await send(nodes[1].client, upload_id, offset, data[offset:])

    session = await rig.session(upload_id)
    assert session.result is not None
    assert session.result.sha256 == hashlib.sha256(data).hexdigest()
    assert rig.store.objects_read == [session.s3_key]


async def test_a_rejected_checksum_and_a_cut_body_keep_the_carried_sha256_right(
    rig: TusRig, nodes: tuple[Instance, Instance]
) -> None:
    data = video_bytes(3 * PART + 9, seed=13)
    node = nodes[0]
    upload_id = await create(node.client, len(data))
    offset = await send(node.client, upload_id, 0, data[:PART])
    wrong = "sha256 " + base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    refused = await node.client.patch(
        f"/v1/tus/{upload_id}",
        data=data[offset : offset + 100],
        headers=patch_headers(offset, **{"Upload-Checksum": wrong}),
    )
    assert refused.status == 460
    cut = ScriptedBody(
        data[offset : offset + PART + 3], chunk=300, then=ConnectionResetError("gone")
    )
    with pytest.raises(ClientDisconnected):
        await node.tus.patch(upload_id, ANN, PatchRequest(offset=offset), cut.chunks())
    offset = await head_offset(node.client, upload_id)
    assert offset == 2 * PART + 3
    await send(node.client, upload_id, offset, data[offset:])

    session = await rig.session(upload_id)
    assert session.result is not None
    assert session.result.sha256 == hashlib.sha256(data).hexdigest()
    assert rig.store.objects_read == []
