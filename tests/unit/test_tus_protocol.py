"""tus 1.0.0 over HTTP, against the in-memory fakes: every header and status code the spec names."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from schemas import UploadCancelled, UploadCompleted, UploadFailed, UploadStarted
from tests.fakes import video_bytes
from tests.unit.test_tus_support import (
    MAX,
    PART,
    ClientFactory,
    Instance,
    TusRig,
    auth,
    checksum_header,
    create,
    head_offset,
    metadata_header,
    patch_headers,
    send,
)


@pytest.fixture
def rig() -> TusRig:
    return TusRig()


@pytest.fixture
async def node(rig: TusRig, aiohttp_client: ClientFactory) -> Instance:
    return await rig.instance(aiohttp_client)


@pytest.fixture
def client(node: Instance) -> TestClient[Any, Any]:
    return node.client


def _json(text: str) -> dict[str, Any]:
    import json

    body: dict[str, Any] = json.loads(text)
    assert set(body) == {"error_code", "error_message", "details", "timestamp"}
    return body


async def test_options_lists_version_extensions_limits_and_algorithms(
    client: TestClient[Any, Any],
) -> None:
    response = await client.options("/v1/tus/")
    assert response.status == 204
    assert response.headers["Tus-Version"] == "1.0.0"
    extensions = set(response.headers["Tus-Extension"].split(","))
    assert extensions >= {
        "creation",
        "creation-with-upload",
        "creation-defer-length",
        "termination",
        "expiration",
        "checksum",
    }
    assert int(response.headers["Tus-Max-Size"]) == MAX
    assert {"sha1", "sha256"} <= set(response.headers["Tus-Checksum-Algorithm"].split(","))
    assert "Tus-Resumable" not in response.headers


@pytest.mark.parametrize("version", [None, "0.2.2", "2.0.0"])
async def test_another_protocol_version_gets_412_with_the_versions_supported(
    client: TestClient[Any, Any], version: str | None
) -> None:
    headers = auth(**{"Upload-Length": "100"})
    del headers["Tus-Resumable"]
    if version is not None:
        headers["Tus-Resumable"] = version
    response = await client.post("/v1/tus/", headers=headers)
    assert response.status == 412
    assert response.headers["Tus-Version"] == "1.0.0"
    assert response.headers["Tus-Resumable"] == "1.0.0"
    assert _json(await response.text())["error_code"] == "UNSUPPORTED_PROTOCOL_VERSION"


async def test_creation_answers_201_with_location_expiry_and_a_tus_session(
    client: TestClient[Any, Any], rig: TusRig
) -> None:
    headers = auth(
        **{"Upload-Length": "5000", "Upload-Metadata": metadata_header(filename="a b.mp4")}
    )
    response = await client.post("/v1/tus/", headers=headers)
    assert response.status == 201
    assert response.headers["Tus-Resumable"] == "1.0.0"
    upload_id = response.headers["Location"].removeprefix("/v1/tus/")
    expires = email.utils.parsedate_to_datetime(response.headers["Upload-Expires"])
    assert expires > datetime.now(UTC)

    status = await client.get(f"/v1/uploads/{upload_id}", headers=auth())
    assert status.status == 200
    body = await status.json()
    assert body["filename"] == "a b.mp4"
    assert body["expected_file_size"] == 5000
    session = await rig.session(upload_id)
    assert session.protocol == "tus"
    assert session.s3_key.endswith(f"/{upload_id}/a_b.mp4")


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 400),
        ({"Upload-Defer-Length": "2"}, 400),
        ({"Upload-Length": "-1"}, 400),
        ({"Upload-Length": "10", "Upload-Defer-Length": "1"}, 400),
        ({"Upload-Length": str(MAX + 1)}, 413),
        ({"Upload-Length": "10", "Upload-Metadata": "filename %%%"}, 400),
        # A file name no session may have is refused as POST /v1/uploads refuses it.
        ({"Upload-Length": "10", "Upload-Metadata": metadata_header(filename="x.pdf", a="1")}, 400),
        ({"Upload-Length": "10", "Upload-Metadata": metadata_header(filename="notes", a="1")}, 201),
        ({"Upload-Length": "10", "Upload-Metadata": metadata_header(filetype="video/x-flv")}, 201),
    ],
)
async def test_creation_headers_are_checked(
    client: TestClient[Any, Any], headers: dict[str, str], status: int
) -> None:
    response = await client.post("/v1/tus/", headers=auth(**headers))
    assert response.status == status, await response.text()
    assert response.headers["Tus-Resumable"] == "1.0.0"


async def test_creation_needs_a_token_and_counts_against_the_quota(
    client: TestClient[Any, Any], rig: TusRig
) -> None:
    headers = auth(**{"Upload-Length": "100"})
    del headers["Authorization"]
    response = await client.post("/v1/tus/", headers=headers)
    assert response.status == 401
    assert response.headers["Tus-Resumable"] == "1.0.0"

    rig.quota.set("ann", bytes_used=rig.quota.bytes_limit - 50)
    response = await client.post("/v1/tus/", headers=auth(**{"Upload-Length": "100"}))
    assert response.status == 429


async def test_head_reports_offset_length_metadata_and_forbids_caching(
    client: TestClient[Any, Any],
) -> None:
    metadata = metadata_header(filename="clip.mp4", note="é")
    response = await client.post(
        "/v1/tus/", headers=auth(**{"Upload-Length": "3000", "Upload-Metadata": metadata})
    )
    upload_id = response.headers["Location"].rsplit("/", 1)[-1]
    await send(client, upload_id, 0, video_bytes(1500))

    head = await client.head(f"/v1/tus/{upload_id}", headers=auth())
    assert head.status == 200
    assert head.headers["Upload-Offset"] == "1500"
    assert head.headers["Upload-Length"] == "3000"
    assert head.headers["Upload-Metadata"] == metadata
    assert head.headers["Cache-Control"] == "no-store"
    assert head.headers["Tus-Resumable"] == "1.0.0"
    assert "Upload-Defer-Length" not in head.headers
    email.utils.parsedate_to_datetime(head.headers["Upload-Expires"])


async def test_head_of_another_users_or_an_unknown_upload(client: TestClient[Any, Any]) -> None:
    upload_id = await create(client, 2000)
    assert (await client.head(f"/v1/tus/{upload_id}", headers=auth("bob"))).status == 403
    unknown = await client.head(f"/v1/tus/{'0' * 32}", headers=auth())
    assert unknown.status == 404
    assert unknown.headers["Tus-Resumable"] == "1.0.0"
    assert "Upload-Offset" not in unknown.headers
    patch = await client.patch(f"/v1/tus/{upload_id}", data=b"x", headers=patch_headers(0, "bob"))
    assert patch.status == 403


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
        assert _json(await response.text())["details"]["offset"] == 1000
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


async def test_termination_answers_204_then_410_and_leaves_nothing(
    client: TestClient[Any, Any], rig: TusRig
) -> None:
    upload_id = await create(client, 10 * PART)
    await send(client, upload_id, 0, video_bytes(3 * PART + 10))
    assert len(rig.store.open_uploads) == 1

    response = await client.delete(f"/v1/tus/{upload_id}", headers=auth())
    assert response.status == 204
    assert response.headers["Tus-Resumable"] == "1.0.0"
    assert rig.store.open_uploads == []
    assert rig.store.parts_held() == 0
    assert not [key for key in rig.store.objects if key.startswith("_ingest/tus/")]
    for method in ("HEAD", "PATCH", "DELETE"):
        again = await client.request(
            method, f"/v1/tus/{upload_id}", data=b"", headers=patch_headers(3 * PART + 10)
        )
        assert again.status == 410, method
    types = [type(e) for e in rig.events(upload_id)]
    assert types[0] is UploadStarted
    assert types[-1] is UploadCancelled
    status = await (await client.get(f"/v1/uploads/{upload_id}", headers=auth())).json()
    assert status["status"] == "cancelled"


async def test_an_expired_upload_answers_410_and_its_parts_are_removed(
    client: TestClient[Any, Any], rig: TusRig
) -> None:
    upload_id = await create(client, 10 * PART)
    await send(client, upload_id, 0, video_bytes(2 * PART + 1))
    rig.clock.advance(3601)
    assert (await client.head(f"/v1/tus/{upload_id}", headers=auth())).status == 410
    response = await client.patch(
        f"/v1/tus/{upload_id}", data=b"x", headers=patch_headers(2 * PART + 1)
    )
    assert response.status == 410
    assert rig.store.open_uploads == []
    assert not [key for key in rig.store.objects if key.startswith("_ingest/tus/")]
    last = rig.events(upload_id)[-1]
    assert isinstance(last, UploadFailed)
    assert last.error_code == "TIMEOUT"
    assert (await rig.session(upload_id)).status == "expired"


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


async def test_method_override_lets_a_post_act_as_patch_or_delete(
    client: TestClient[Any, Any],
) -> None:
    upload_id = await create(client, 5000)
    response = await client.post(
        f"/v1/tus/{upload_id}",
        data=video_bytes(700),
        headers=patch_headers(0, **{"X-HTTP-Method-Override": "PATCH"}),
    )
    assert response.status == 204
    assert response.headers["Upload-Offset"] == "700"
    response = await client.post(
        f"/v1/tus/{upload_id}", headers=auth(**{"X-HTTP-Method-Override": "DELETE"})
    )
    assert response.status == 204
    assert (await client.head(f"/v1/tus/{upload_id}", headers=auth())).status == 410


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


async def test_the_session_api_terminates_an_idle_tus_upload(
    client: TestClient[Any, Any], rig: TusRig
) -> None:
    upload_id = await create(client, 10 * PART)
    await send(client, upload_id, 0, video_bytes(2 * PART + 5))
    response = await client.delete(f"/v1/uploads/{upload_id}", headers=auth())
    assert response.status == 204
    assert rig.store.open_uploads == []
    assert not [key for key in rig.store.objects if key.startswith("_ingest/tus/")]
    assert isinstance(rig.events(upload_id)[-1], UploadCancelled)
    assert (await client.head(f"/v1/tus/{upload_id}", headers=auth())).status == 410
    again = await client.delete(f"/v1/uploads/{upload_id}", headers=auth())
    assert again.status == 204


@pytest.mark.parametrize(
    "path", ["/v1/dashboard/upload/{id}", "/v1/dashboard/upload/sessions/{id}"]
)
async def test_the_dashboard_aliases_of_delete_terminate_a_tus_upload_too(
    client: TestClient[Any, Any], rig: TusRig, path: str
) -> None:
    upload_id = await create(client, 10 * PART)
    await send(client, upload_id, 0, video_bytes(2 * PART + 5))
    response = await client.delete(path.format(id=upload_id), headers=auth())
    assert response.status == 204
    assert rig.store.open_uploads == []
    assert isinstance(rig.events(upload_id)[-1], UploadCancelled)
    assert (await client.delete(path.format(id=upload_id), headers=auth("bob"))).status == 403


async def test_the_session_api_cannot_cancel_a_completed_tus_upload(
    client: TestClient[Any, Any],
) -> None:
    data = video_bytes(2 * PART)
    upload_id = await create(client, len(data))
    await send(client, upload_id, 0, data)
    response = await client.delete(f"/v1/uploads/{upload_id}", headers=auth())
    assert response.status == 409
    assert _json(await response.text())["error_code"] == "SESSION_ALREADY_USED"
