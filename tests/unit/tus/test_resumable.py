"""Resumable uploads as the IETF draft (interop version 8) speaks them, on the in-memory fakes.

The upload underneath is a tus upload, so these check the draft's side: the
headers, the end of an upload said by the client, the length learnt late,
the final response that is the upload's result, and the errors.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from ingest.errors import InvalidRequest
from ingest.http.resumable import MISMATCHING_OFFSET, sf_boolean, sf_integer
from schemas import UploadCompleted, UploadStarted
from tests.fakes import video_bytes
from tests.unit.test_tus_support import PART, Instance, TusRig
from tests.unit.test_tus_support import auth as tus_auth

BASE = "/v1/resumable"


def auth(user: str = "ann", **headers: str) -> dict[str, str]:
    token = tus_auth(user)["Authorization"]
    return {"Authorization": token, **headers}


def named(complete: bool, **headers: str) -> dict[str, str]:
    return auth(
        **{
            "Upload-Complete": "?1" if complete else "?0",
            "Upload-Draft-Interop-Version": "8",
            "Content-Disposition": 'inline; filename="clip.mp4"',
            "Content-Type": "video/mp4",
            **headers,
        }
    )


async def append(
    client: TestClient[Any, Any], location: str, offset: int, data: bytes, complete: bool
) -> Any:
    return await client.patch(
        location,
        data=data,
        headers=auth(
            **{
                "Upload-Complete": "?1" if complete else "?0",
                "Upload-Offset": str(offset),
                "Content-Type": "application/partial-upload",
            }
        ),
    )


async def test_the_whole_file_in_one_request_answers_with_the_result(
    rig: TusRig, node: Instance
) -> None:
    data = video_bytes(3 * PART + 7, seed=1)

    response = await node.client.post(BASE, data=data, headers=named(True))

    assert response.status == 201, await response.text()
    assert response.headers["Upload-Complete"] == "?1"
    assert response.headers["Location"].startswith(f"{BASE}/")
    result = await response.json()
    assert result["file_hash"] == hashlib.sha256(data).hexdigest()
    assert result["filename"] == "clip.mp4"
    assert result["file_size"] == len(data)
    upload_id = response.headers["Location"].rsplit("/", 1)[-1]
    events = rig.events(upload_id)
    assert isinstance(events[0], UploadStarted)
    assert isinstance(events[-1], UploadCompleted)
    assert events[-1].sha256 == result["file_hash"]


async def test_an_upload_in_pieces_with_its_length_said_first(rig: TusRig, node: Instance) -> None:
    data = video_bytes(4 * PART + 3, seed=2)
    created = await node.client.post(
        BASE, data=data[:1500], headers=named(False, **{"Upload-Length": str(len(data))})
    )
    assert created.status == 201, await created.text()
    assert created.headers["Upload-Complete"] == "?0"
    assert created.headers["Upload-Offset"] == "1500"
    location = created.headers["Location"]

    head = await node.client.head(location, headers=auth())
    assert head.status == 204
    assert head.headers["Upload-Offset"] == "1500"
    assert head.headers["Upload-Length"] == str(len(data))
    assert head.headers["Upload-Complete"] == "?0"
    assert head.headers["Cache-Control"] == "no-store"
    assert "max-size=" in head.headers["Upload-Limit"]
    assert "max-age=" in head.headers["Upload-Limit"]

    middle = await append(node.client, location, 1500, data[1500:3000], complete=False)
    assert middle.status == 204
    assert middle.headers["Upload-Offset"] == "3000"
    final = await append(node.client, location, 3000, data[3000:], complete=True)
    assert final.status == 201, await final.text()
    assert final.headers["Upload-Complete"] == "?1"
    assert (await final.json())["file_hash"] == hashlib.sha256(data).hexdigest()

    done = await node.client.head(location, headers=auth())
    assert done.headers["Upload-Complete"] == "?1"
    assert done.headers["Upload-Offset"] == str(len(data))


async def test_the_length_may_stay_unknown_until_the_last_append(
    rig: TusRig, node: Instance
) -> None:
    data = video_bytes(2 * PART + 11, seed=3)
    created = await node.client.post(BASE, data=data[:900], headers=named(False))
    location = created.headers["Location"]
    head = await node.client.head(location, headers=auth())
    assert "Upload-Length" not in head.headers

    final = await append(node.client, location, 900, data[900:], complete=True)

    assert final.status == 201, await final.text()
    assert (await final.json())["file_size"] == len(data)
    session = await rig.session(location.rsplit("/", 1)[-1])
    assert session.result is not None
    assert session.result.sha256 == hashlib.sha256(data).hexdigest()


async def test_an_empty_creation_only_names_the_upload_resource(node: Instance) -> None:
    created = await node.client.post(BASE, headers=named(False))

    assert created.status == 201
    assert created.headers["Upload-Offset"] == "0"
    head = await node.client.head(created.headers["Location"], headers=auth())
    assert head.headers["Upload-Offset"] == "0"


async def test_a_wrong_offset_is_409_with_the_right_offset_and_the_problem_type(
    node: Instance,
) -> None:
    data = video_bytes(2 * PART, seed=4)
    created = await node.client.post(BASE, data=data[:1000], headers=named(False))

    response = await append(node.client, created.headers["Location"], 700, data[700:], True)

    assert response.status == 409
    assert response.headers["Upload-Offset"] == "1000"
    assert response.headers["Upload-Complete"] == "?0"
    assert response.content_type == "application/problem+json"
    body = await response.json()
    assert body["type"] == MISMATCHING_OFFSET
    assert body["expected-offset"] == 1000
    assert body["provided-offset"] == "700"
    assert body["error_code"] == "OFFSET_MISMATCH"


async def test_a_completed_upload_replays_its_result_to_an_empty_final_append(
    node: Instance,
) -> None:
    data = video_bytes(PART + 5, seed=5)
    created = await node.client.post(BASE, data=data, headers=named(True))
    first = await created.json()

    again = await append(node.client, created.headers["Location"], len(data), b"", True)

    assert again.status == 201
    assert (await again.json())["video_id"] == first["video_id"]


async def test_refusals(node: Instance) -> None:
    data = video_bytes(PART, seed=6)
    no_flag = await node.client.post(BASE, data=data, headers=auth())
    assert no_flag.status == 400
    assert "Upload-Complete" in (await no_flag.json())["error_message"]

    inconsistent = await node.client.post(
        BASE, data=data, headers=named(True, **{"Upload-Length": str(len(data) + 1)})
    )
    assert inconsistent.status == 400

    created = await node.client.post(BASE, data=data[:100], headers=named(False))
    location = created.headers["Location"]
    wrong_type = await node.client.patch(
        location,
        data=data[100:],
        headers=auth(**{"Upload-Complete": "?1", "Upload-Offset": "100"}),
    )
    assert wrong_type.status == 415
    assert wrong_type.headers["Upload-Complete"] == "?0"

    stranger = await node.client.head(location, headers=auth("bob"))
    assert stranger.status == 403

    cancelled = await node.client.delete(location, headers=auth())
    assert cancelled.status == 204
    gone = await node.client.head(location, headers=auth())
    assert gone.status in (404, 410)


async def test_a_text_file_is_refused_like_any_upload(node: Instance) -> None:
    response = await node.client.post(
        BASE, data=b"hello, this is not a video" * 50, headers=named(True)
    )
    assert response.status == 415
    assert response.headers["Upload-Complete"] == "?0"


def test_structured_field_items() -> None:
    assert sf_boolean("?1") is True
    assert sf_boolean("?0;p=1") is False
    assert sf_boolean("1") is None
    assert sf_boolean(None) is None
    assert sf_integer("42", "Upload-Offset") == 42
    assert sf_integer(None, "Upload-Offset") is None
    for bad in ("-1", "1.5", "abc", "9" * 16):
        with pytest.raises(InvalidRequest):
            sf_integer(bad, "Upload-Offset")
