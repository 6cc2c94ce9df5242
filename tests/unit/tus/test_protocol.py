"""tus 1.0.0 over HTTP, against the in-memory fakes: discovery, creation, HEAD, termination and
expiry, with every header and status code the spec names for them."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from schemas import UploadCancelled, UploadFailed, UploadStarted
from tests.fakes import video_bytes
from tests.unit.test_tus_support import (
    MAX,
    PART,
    TusRig,
    auth,
    create,
    error_body,
    metadata_header,
    patch_headers,
    send,
)


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
    assert error_body(await response.text())["error_code"] == "UNSUPPORTED_PROTOCOL_VERSION"


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
    assert error_body(await response.text())["error_code"] == "SESSION_ALREADY_USED"
