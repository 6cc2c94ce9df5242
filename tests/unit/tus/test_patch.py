"""tus 1.0.0 PATCH over HTTP, against the in-memory fakes: offsets, content type, checksums,
lengths, creation with upload, deferred length and Expect, with the statuses the spec names."""

from __future__ import annotations

import email.utils
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from schemas import UploadCompleted, UploadFailed
from tests.fakes import video_bytes
from tests.unit.test_tus_support import (
    MAX,
    PART,
    TusRig,
    auth,
    checksum_header,
    create,
    error_body,
    head_offset,
    metadata_header,
    patch_headers,
    send,
)


async def test_patch_answers_204_with_the_new_offset_and_expiry(
    client: TestClient[Any, Any], rig: TusRig
) -> None:
    upload_id = await create(client, 5000)
    before = (await rig.session(upload_id)).expires_at
    rig.clock.advance(60)
    response = await client.patch(
        f"/v1/tus/{upload_id}", data=video_bytes(2500), headers=patch_headers(0)
    )
    assert response.status == 204
    assert response.headers["Upload-Offset"] == "2500"
    assert response.headers["Tus-Resumable"] == "1.0.0"
    expires = email.utils.parsedate_to_datetime(response.headers["Upload-Expires"])
    assert expires.timestamp() >= before.timestamp() + 59


async def test_an_offset_other_than_the_committed_one_gets_409(
    client: TestClient[Any, Any], rig: TusRig
) -> None:
    upload_id = await create(client, 5000)
    await send(client, upload_id, 0, video_bytes(1000))
    for offset in (0, 999, 1001):
        response = await client.patch(
            f"/v1/tus/{upload_id}", data=b"x" * 10, headers=patch_headers(offset)
        )
        assert response.status == 409
        assert error_body(await response.text())["details"]["offset"] == 1000
    assert await head_offset(client, upload_id) == 1000


@pytest.mark.parametrize("content_type", ["application/octet-stream", "video/mp4", None])
async def test_a_patch_content_type_other_than_offset_octet_stream_gets_415(
    client: TestClient[Any, Any], content_type: str | None
) -> None:
    upload_id = await create(client, 5000)
    headers = patch_headers(0)
    del headers["Content-Type"]
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = await client.patch(f"/v1/tus/{upload_id}", data=video_bytes(100), headers=headers)
    assert response.status == 415
    assert response.headers["Tus-Resumable"] == "1.0.0"
    assert await head_offset(client, upload_id) == 0


async def test_first_bytes_that_are_not_a_video_get_415_before_any_part(
    client: TestClient[Any, Any], rig: TusRig
) -> None:
    upload_id = await create(client, 5 * PART)
    response = await client.patch(
        f"/v1/tus/{upload_id}", data=b"%PDF-1.7" + b"0" * 3000, headers=patch_headers(0)
    )
    assert response.status == 415
    assert rig.store.uploads == []
    assert (await client.head(f"/v1/tus/{upload_id}", headers=auth())).status == 410
    (failed,) = rig.events(upload_id)
    assert isinstance(failed, UploadFailed)
    assert failed.error_code == "UNSUPPORTED_FORMAT"


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "md5"])
async def test_a_checksum_mismatch_gets_460_and_leaves_the_offset(
    client: TestClient[Any, Any], rig: TusRig, algorithm: str
) -> None:
    upload_id = await create(client, 6 * PART)
    first = video_bytes(2 * PART + 100, seed=1)
    ok = checksum_header(algorithm, first)
    assert await send(client, upload_id, 0, first, **{"Upload-Checksum": ok}) == 2 * PART + 100

    second = video_bytes(6 * PART, seed=2)[: 2 * PART + 7]
    wrong = checksum_header(algorithm, second + b"!")
    response = await client.patch(
        f"/v1/tus/{upload_id}",
        data=second,
        headers=patch_headers(2 * PART + 100, **{"Upload-Checksum": wrong}),
    )
    assert response.status == 460
    assert response.headers["Tus-Resumable"] == "1.0.0"
    assert await head_offset(client, upload_id) == 2 * PART + 100
    # The rejected bytes left nothing the next request could mistake for committed data.
    tails = [key for key in rig.store.objects if key.startswith("_ingest/tus/")]
    assert tails == [f"_ingest/tus/{upload_id}/tail-{2 * PART}-{2 * PART + 100}"]

    good = checksum_header(algorithm, second)
    offset = await send(client, upload_id, 2 * PART + 100, second, **{"Upload-Checksum": good})
    assert offset == 4 * PART + 107


async def test_an_unsupported_checksum_algorithm_gets_400(client: TestClient[Any, Any]) -> None:
    upload_id = await create(client, 5000)
    for value in ("crc32 AAAAAA==", "sha1 not-base64!", "sha256 AAAA"):
        response = await client.patch(
            f"/v1/tus/{upload_id}",
            data=video_bytes(100),
            headers=patch_headers(0, **{"Upload-Checksum": value}),
        )
        assert response.status == 400, value
    assert await head_offset(client, upload_id) == 0


async def test_bytes_past_the_upload_length_get_413(
    client: TestClient[Any, Any], rig: TusRig
) -> None:
    upload_id = await create(client, 3000)
    # Declared by Content-Length: refused before the body is read.
    response = await client.patch(
        f"/v1/tus/{upload_id}", data=video_bytes(3001), headers=patch_headers(0)
    )
    assert response.status == 413
    assert await head_offset(client, upload_id) == 0

    # Chunked: refused on the chunk that passes the length (what came before it is kept:
    # see test_tus_resume; here the server may well read it all as one chunk).
    async def chunks() -> Any:
        data = video_bytes(4000)
        for at in range(0, len(data), 500):
            yield data[at : at + 500]

    response = await client.patch(f"/v1/tus/{upload_id}", data=chunks(), headers=patch_headers(0))
    assert response.status == 413
    assert await head_offset(client, upload_id) <= 3000
    assert rig.store.completed_uploads == []


async def test_bytes_past_the_maximum_of_a_deferred_upload_get_413(
    client: TestClient[Any, Any],
) -> None:
    upload_id = await create(client, None)

    async def chunks() -> Any:
        for index in range(MAX // (64 * 1024) + 2):
            yield video_bytes(64 * 1024, seed=index) if index == 0 else b"\0" * (64 * 1024)

    response = await client.patch(f"/v1/tus/{upload_id}", data=chunks(), headers=patch_headers(0))
    assert response.status == 413
    assert await head_offset(client, upload_id) <= MAX


async def test_a_patch_extends_the_expiry(client: TestClient[Any, Any], rig: TusRig) -> None:
    upload_id = await create(client, 10 * PART)
    rig.clock.advance(3000)
    await send(client, upload_id, 0, video_bytes(PART))
    rig.clock.advance(3000)
    assert await head_offset(client, upload_id) == PART


async def test_creation_with_upload_stores_the_body_and_reports_its_offset(
    client: TestClient[Any, Any], rig: TusRig
) -> None:
    data = video_bytes(2 * PART + 300)
    response = await client.post(
        "/v1/tus/",
        data=data,
        headers=auth(
            **{
                "Upload-Length": str(len(data)),
                "Content-Type": "application/offset+octet-stream",
                "Upload-Metadata": metadata_header(filename="whole.mp4"),
            }
        ),
    )
    assert response.status == 201, await response.text()
    assert response.headers["Upload-Offset"] == str(len(data))
    upload_id = response.headers["Location"].rsplit("/", 1)[-1]
    session = await rig.session(upload_id)
    assert session.status == "completed"
    assert rig.store.objects[session.s3_key] == data


async def test_deferred_length_is_set_by_a_later_patch(
    client: TestClient[Any, Any], rig: TusRig
) -> None:
    upload_id = await create(client, None)
    head = await client.head(f"/v1/tus/{upload_id}", headers=auth())
    assert head.headers["Upload-Defer-Length"] == "1"
    assert "Upload-Length" not in head.headers

    data = video_bytes(3 * PART + 5)
    assert await send(client, upload_id, 0, data[: 2 * PART + 1]) == 2 * PART + 1
    offset = await send(
        client, upload_id, 2 * PART + 1, data[2 * PART + 1 :], **{"Upload-Length": str(len(data))}
    )
    assert offset == len(data)
    head = await client.head(f"/v1/tus/{upload_id}", headers=auth())
    assert head.headers["Upload-Length"] == str(len(data))
    session = await rig.session(upload_id)
    assert session.status == "completed"
    assert rig.store.objects[session.s3_key] == data
    assert isinstance(rig.events(upload_id)[-1], UploadCompleted)

    # Once set, the length cannot change.
    other = await create(client, None)
    await send(client, other, 0, data[:100], **{"Upload-Length": "2000"})
    response = await client.patch(
        f"/v1/tus/{other}",
        data=data[100:200],
        headers=patch_headers(100, **{"Upload-Length": "3000"}),
    )
    assert response.status == 400


async def test_expect_100_continue_refuses_a_patch_before_its_body(
    client: TestClient[Any, Any], rig: TusRig
) -> None:
    upload_id = await create(client, 5000)
    await send(client, upload_id, 0, video_bytes(1000))
    refused = await client.patch(
        f"/v1/tus/{upload_id}", data=b"x" * 10, headers=patch_headers(0), expect100=True
    )
    assert refused.status == 409
    assert refused.headers["Tus-Resumable"] == "1.0.0"
    accepted = await client.patch(
        f"/v1/tus/{upload_id}", data=b"x" * 10, headers=patch_headers(1000), expect100=True
    )
    assert accepted.status == 204
    assert accepted.headers["Upload-Offset"] == "1010"
