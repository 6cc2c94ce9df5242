"""Resumable uploads (IETF draft, interop version 8) over real HTTP to the real stack.

The 104 interim response can only be seen on the wire (client libraries skip
1xx), so the creation is sent over a raw socket: the client learns where to
resume before it sends a byte, then breaks off mid-body and resumes from HEAD.
"""

from __future__ import annotations

import asyncio

import aiohttp

from tests.integration.harness import RunningIngest, stored_sha256
from tests.integration.rawhttp import open_request, read_response
from tests.media import MiB, fake_video, sha256_of


async def test_104_names_the_upload_before_the_body_and_the_upload_resumes(
    ingest: RunningIngest, http: aiohttp.ClientSession
) -> None:
    size = 10 * MiB
    data = fake_video(size, seed=41)
    headers = {
        **ingest.auth("ietf"),
        "Upload-Complete": "?1",
        "Upload-Draft-Interop-Version": "8",
        "Content-Length": str(size),
        "Content-Type": "video/mp4",
        "Content-Disposition": 'inline; filename="drafted.mp4"',
    }
    reader, writer = await open_request(ingest.port, "POST", "/v1/resumable", headers)
    try:
        interim = await read_response(reader)
        assert interim.status == 104
        assert interim.headers["upload-draft-interop-version"] == "8"
        location = interim.headers["location"]
        assert location.startswith("/v1/resumable/")
        assert "max-size=" in interim.headers["upload-limit"]
        writer.write(data[: 3 * MiB])  # then the connection drops
        await writer.drain()
    finally:
        writer.close()

    offset = -1
    for _ in range(50):  # the server commits what arrived once it sees the connection gone
        async with http.head(f"{ingest.url}{location}", headers=ingest.auth("ietf")) as head:
            assert head.status == 204
            offset = int(head.headers["Upload-Offset"])
            if offset > 0 and head.headers["Upload-Complete"] == "?0":
                break
        await asyncio.sleep(0.1)
    assert 0 < offset <= 3 * MiB

    async with http.patch(
        f"{ingest.url}{location}",
        data=data[offset:],
        headers={
            **ingest.auth("ietf"),
            "Upload-Complete": "?1",
            "Upload-Offset": str(offset),
            "Content-Type": "application/partial-upload",
        },
    ) as final:
        assert final.status == 201, await final.text()
        assert final.headers["Upload-Complete"] == "?1"
        result = await final.json()
    expected = sha256_of(size, seed=41)
    assert result["file_hash"] == expected
    assert result["filename"] == "drafted.mp4"
    assert await stored_sha256(ingest.services.settings, result["s3_key"]) == (expected, size)


async def test_no_104_for_a_client_without_the_interop_version(ingest: RunningIngest) -> None:
    data = fake_video(64 * 1024, seed=42)
    headers = {
        **ingest.auth("ietf"),
        "Upload-Complete": "?1",
        "Content-Length": str(len(data)),
        "Connection": "close",
    }
    reader, writer = await open_request(ingest.port, "POST", "/v1/resumable", headers)
    try:
        writer.write(data)
        await writer.drain()
        response = await read_response(reader)
    finally:
        writer.close()
    assert response.status == 201
    assert response.headers["upload-complete"] == "?1"
