"""Tails kept in segments: small PATCHes append instead of rewriting the tail.

Against the in-memory fakes; PART is 1 KiB here, so "small" is a few bytes.
"""

from __future__ import annotations

import hashlib
import math

import pytest

from ingest.auth import Principal
from ingest.errors import ClientDisconnected
from ingest.usecases.tus.protocol import PatchRequest
from ingest.usecases.tus.state import with_state
from ingest.usecases.tus.tail import merged_count
from tests.fakes import ScriptedBody, video_bytes
from tests.unit.test_tus_support import (
    PART,
    Instance,
    TusRig,
    checksum_header,
    create,
    head_offset,
    patch_headers,
    send,
)

ANN = Principal("ann", frozenset())


def tail_objects(rig: TusRig, upload_id: str) -> dict[str, bytes]:
    prefix = f"_ingest/tus/{upload_id}/"
    return {k: v for k, v in rig.store.objects.items() if k.startswith(prefix)}


def test_merging_like_a_binary_counter_bounds_segments_and_rewrites() -> None:
    sizes: list[int] = [900]
    rewritten = 0
    for _ in range(500):
        sizes.append(1)
        count = merged_count(sizes)
        merged = sum(sizes[-count:])
        rewritten += merged
        sizes[-count:] = [merged]
    assert sum(sizes) == 1400
    assert len(sizes) <= math.log2(500) + 2
    # Each byte is rewritten about log2(500) times, never the 900-byte head.
    assert rewritten <= 500 * (math.log2(500) + 2)


async def test_small_patches_append_segments_instead_of_rewriting_the_tail(
    rig: TusRig, node: Instance
) -> None:
    data = video_bytes(3 * PART, seed=21)
    upload_id = await create(node.client, len(data))
    offset = await send(node.client, upload_id, 0, data[: PART + 900])
    written_before = rig.store.small_bytes_written
    for _ in range(40):
        offset = await send(node.client, upload_id, offset, data[offset : offset + 2])

    assert offset == PART + 980
    written = rig.store.small_bytes_written - written_before
    assert written < 40 * 2 * 8, f"{written} bytes written for 80 bytes of PATCHes"
    tails = tail_objects(rig, upload_id)
    assert 1 < len(tails) <= 8
    assert (
        b"".join(tails[k] for k in sorted(tails, key=lambda k: int(k.rsplit("-", 2)[1])))
        == (data[PART:offset])
    )

    offset = await send(node.client, upload_id, offset, data[offset:])
    session = await rig.session(upload_id)
    assert session.result is not None
    assert session.result.sha256 == hashlib.sha256(data).hexdigest()
    assert rig.store.objects[session.s3_key] == data
    assert tail_objects(rig, upload_id) == {}


async def test_a_small_patch_cut_short_keeps_what_arrived(rig: TusRig, node: Instance) -> None:
    data = video_bytes(2 * PART, seed=22)
    upload_id = await create(node.client, len(data))
    offset = await send(node.client, upload_id, 0, data[:600])
    body = ScriptedBody(data[600:650], chunk=10, then=ConnectionResetError("gone"))
    request = PatchRequest(offset=offset, content_length=100)

    with pytest.raises(ClientDisconnected):
        await node.tus.patch(upload_id, ANN, request, body.chunks())

    assert await head_offset(node.client, upload_id) == 650
    assert await send(node.client, upload_id, 650, data[650:]) == len(data)
    session = await rig.session(upload_id)
    assert rig.store.objects[session.s3_key] == data


async def test_a_small_patch_with_a_wrong_checksum_keeps_nothing(
    rig: TusRig, node: Instance
) -> None:
    data = video_bytes(2 * PART, seed=23)
    upload_id = await create(node.client, len(data))
    await send(node.client, upload_id, 0, data[:600])
    await send(node.client, upload_id, 600, data[600:610])
    before = tail_objects(rig, upload_id)

    response = await node.client.patch(
        f"/v1/tus/{upload_id}",
        data=data[610:620],
        headers=patch_headers(610, **{"Upload-Checksum": checksum_header("sha1", b"other")}),
    )

    assert response.status == 460
    assert await head_offset(node.client, upload_id) == 610
    assert tail_objects(rig, upload_id) == before
    assert await send(node.client, upload_id, 610, data[610:]) == len(data)


async def test_a_tail_kept_as_one_object_is_read_and_rewritten_by_the_next_patch(
    rig: TusRig, node: Instance
) -> None:
    data = video_bytes(2 * PART, seed=24)
    upload_id = await create(node.client, len(data))
    await send(node.client, upload_id, 0, data[:700])
    # What a document written before segments looks like: one tail object named by its offset.
    (key,) = tail_objects(rig, upload_id)
    rig.store.objects[f"_ingest/tus/{upload_id}/tail-700"] = rig.store.objects.pop(key)
    await node.tus.sessions.mutate(upload_id, lambda s: with_state(s, tail_segments=()))

    offset = await send(node.client, upload_id, 700, data[700:705])
    assert offset == 705
    assert list(tail_objects(rig, upload_id)) == [f"_ingest/tus/{upload_id}/tail-0-705"]
    assert await send(node.client, upload_id, 705, data[705:]) == len(data)
    session = await rig.session(upload_id)
    assert rig.store.objects[session.s3_key] == data
