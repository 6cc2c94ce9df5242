"""What the write path refuses, and that a refused or broken upload leaves nothing behind.

The admission rules are one rule book for every way in: a file name no session
may have is refused by `POST /v1/uploads`, its dashboard alias and tus
creation alike.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec
import pytest

from ingest.auth import issue_token
from ingest.settings import IngestSettings
from schemas import UploadCancelled, UploadFailed, UploadStarted
from tests.integration.harness import (
    RunningIngest,
    bucket_keys,
    ended,
    object_exists,
    open_uploads,
    running_ingest,
    upload_events,
)
from tests.integration.rawhttp import open_request, read_response
from tests.media import NOT_A_VIDEO, MiB, async_chunks, fake_video, fake_video_chunks

MAX = 20 * MiB


@pytest.fixture
def small_settings(settings: IngestSettings) -> IngestSettings:
    return msgspec.structs.replace(settings, max_file_size=MAX, session_ttl_seconds=60.0)


@pytest.fixture
async def ingest(small_settings: IngestSettings) -> AsyncIterator[RunningIngest]:
    async with running_ingest(small_settings) as server:
        yield server


async def _session(
    http: aiohttp.ClientSession, ingest: RunningIngest, user: str = "alice", **fields: object
) -> dict[str, str]:
    async with http.post(f"{ingest.url}/v1/uploads", json=fields, headers=ingest.auth(user)) as r:
        assert r.status == 201, await r.text()
        created: dict[str, str] = await r.json()
        return created


async def _key_of(http: aiohttp.ClientSession, ingest: RunningIngest, session_id: str) -> str:
    services = ingest.services
    session, _ = await services.sessions.load(session_id)
    return session.s3_key


async def _failed_with(settings: IngestSettings, session_id: str, code: str) -> None:
    events = await upload_events(settings, session_id, until=ended)
    last = events[-1]
    assert isinstance(last, UploadFailed), events
    assert last.error_code == code


def _tus_creation(ingest: RunningIngest, user: str, filename: str, length: int) -> dict[str, str]:
    encoded = base64.b64encode(filename.encode()).decode()
    return {
        **ingest.auth(user),
        "Tus-Resumable": "1.0.0",
        "Upload-Length": str(length),
        "Upload-Metadata": f"filename {encoded}",
    }


async def _refusal(response: aiohttp.ClientResponse) -> tuple[int, dict[str, Any]]:
    body: dict[str, Any] = await response.json()
    return response.status, body


async def test_payload_exe_is_refused_by_every_way_in_and_nothing_is_stored(
    ingest: RunningIngest, http: aiohttp.ClientSession, small_settings: IngestSettings
) -> None:
    user, size = "exe-sender", 64 * 1024
    before = await bucket_keys(small_settings)
    refusals: list[tuple[int, dict[str, Any]]] = []
    for path in ("/v1/uploads", "/v1/dashboard/upload/initiate"):
        async with http.post(
            f"{ingest.url}{path}",
            json={"filename": "payload.exe", "expected_file_size": size},
            headers=ingest.auth(user),
        ) as response:
            refusals.append(await _refusal(response))
    tus_headers = _tus_creation(ingest, user, "payload.exe", size)
    async with http.post(f"{ingest.url}/v1/tus/", headers=tus_headers) as response:
        assert response.headers["Tus-Resumable"] == "1.0.0"
        assert "Location" not in response.headers
        refusals.append(await _refusal(response))
    # creation-with-upload: refused before its body goes anywhere.
    async with http.post(
        f"{ingest.url}/v1/tus/",
        data=fake_video(size, seed=7),
        headers={**tus_headers, "Content-Type": "application/offset+octet-stream"},
    ) as response:
        assert "Location" not in response.headers
        refusals.append(await _refusal(response))

    for status, body in refusals:
        assert status == 400, body
        assert body["error_code"] == "FORMAT_NOT_ALLOWED"
        assert "'exe' is not allowed" in body["error_message"]
        assert body["details"]["allowed_formats"] == list(small_settings.allowed_formats)
    async with http.get(f"{ingest.url}/v1/uploads", headers=ingest.auth(user)) as listed:
        assert (await listed.json())["total"] == 0
    # No session, index entry, object, part or tail: the bucket is as it was.
    assert await bucket_keys(small_settings) == before

    # The same requests for a video are accepted: the name was the reason.
    async with http.post(
        f"{ingest.url}/v1/uploads",
        json={"filename": "clip.mp4", "expected_file_size": size},
        headers=ingest.auth(user),
    ) as response:
        assert response.status == 201, await response.text()
    async with http.post(
        f"{ingest.url}/v1/tus/", headers=_tus_creation(ingest, user, "clip.mp4", size)
    ) as response:
        assert response.status == 201, await response.text()


async def test_client_gone_mid_body_leaves_no_parts_and_reports_disconnect(
    ingest: RunningIngest, http: aiohttp.ClientSession, small_settings: IngestSettings
) -> None:
    session = await _session(http, ingest, filename="gone.mp4")
    key = await _key_of(http, ingest, session["session_id"])
    _, writer = await open_request(
        ingest.port,
        "PUT",
        session["upload_url"],
        {**ingest.auth("alice"), "Content-Length": str(18 * MiB), "Content-Type": "video/mp4"},
    )
    for chunk in fake_video_chunks(12 * MiB, seed=3):
        writer.write(chunk)
        await writer.drain()
    await asyncio.sleep(0.5)  # let at least one part reach S3 first
    writer.transport.abort()

    await _failed_with(small_settings, session["session_id"], "CLIENT_DISCONNECTED")
    deadline = time.monotonic() + 10
    while await open_uploads(small_settings, key) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert await open_uploads(small_settings, key) == []
    assert not await object_exists(small_settings, key)


async def test_declared_size_over_the_maximum_is_refused_before_the_body(
    ingest: RunningIngest, http: aiohttp.ClientSession, small_settings: IngestSettings
) -> None:
    session = await _session(http, ingest, filename="huge.mp4")
    reader, writer = await open_request(
        ingest.port,
        "PUT",
        session["upload_url"],
        {**ingest.auth("alice"), "Content-Length": str(MAX + 1), "Content-Type": "video/mp4"},
    )
    response = await read_response(reader)
    writer.close()
    assert response.status == 413
    assert response.json()["error_code"] == "FILE_TOO_LARGE"
    key = await _key_of(http, ingest, session["session_id"])
    assert await open_uploads(small_settings, key) == []


async def test_undeclared_chunked_body_over_the_maximum_gets_413_and_leaves_nothing(
    ingest: RunningIngest, http: aiohttp.ClientSession, small_settings: IngestSettings
) -> None:
    session = await _session(http, ingest, filename="sneaky.mp4")
    key = await _key_of(http, ingest, session["session_id"])
    body = async_chunks(fake_video_chunks(MAX + 5 * MiB, seed=4))
    try:
        async with http.put(
            f"{ingest.url}{session['upload_url']}", data=body, headers=ingest.auth("alice")
        ) as response:
            assert response.status == 413
            assert (await response.json())["error_code"] == "FILE_TOO_LARGE"
    except aiohttp.ClientOSError:
        pass  # the server may close while the client still sends; the event below still tells
    await _failed_with(small_settings, session["session_id"], "TOO_LARGE")
    assert await open_uploads(small_settings, key) == []
    assert not await object_exists(small_settings, key)


async def test_expect_100_continue_with_too_large_length_is_refused_before_any_body_byte(
    ingest: RunningIngest, http: aiohttp.ClientSession
) -> None:
    session = await _session(http, ingest, filename="polite.mp4")
    reader, writer = await open_request(
        ingest.port,
        "PUT",
        session["upload_url"],
        {**ingest.auth("alice"), "Content-Length": str(MAX + 1), "Expect": "100-continue"},
    )
    response = await read_response(reader)  # no body byte was sent
    writer.close()
    assert response.status == 413
    status = await ingest.services.sessions.get_owned(
        session["session_id"], ingest.services.verifier.verify(ingest.token("alice"))
    )
    assert status.status == "active", "a refused Expect must not use up the session"


async def test_expect_100_continue_is_answered_when_the_upload_is_acceptable(
    ingest: RunningIngest, http: aiohttp.ClientSession
) -> None:
    data = fake_video(64 * 1024, seed=5)
    session = await _session(http, ingest, filename="ok.mp4")
    reader, writer = await open_request(
        ingest.port,
        "PUT",
        session["upload_url"],
        {**ingest.auth("alice"), "Content-Length": str(len(data)), "Expect": "100-continue"},
    )
    interim = await read_response(reader)
    assert interim.status == 100
    writer.write(data)
    await writer.drain()
    final = await read_response(reader)
    writer.close()
    assert final.status == 201, final.body
    assert final.json()["file_size"] == len(data)


async def test_first_bytes_not_a_video_get_415_before_any_part_is_stored(
    ingest: RunningIngest, http: aiohttp.ClientSession, small_settings: IngestSettings
) -> None:
    session = await _session(http, ingest, filename="doc.mp4")
    key = await _key_of(http, ingest, session["session_id"])
    async with http.put(
        f"{ingest.url}{session['upload_url']}",
        data=NOT_A_VIDEO + b"x" * (2 * MiB),
        headers=ingest.auth("alice"),
    ) as response:
        assert response.status == 415
        assert (await response.json())["error_code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert await open_uploads(small_settings, key) == []
    assert not await object_exists(small_settings, key)


async def test_tokens_owners_expiry_and_reuse(
    ingest: RunningIngest, http: aiohttp.ClientSession, small_settings: IngestSettings
) -> None:
    url = f"{ingest.url}/v1/uploads"
    async with http.post(url, json={}) as r:
        assert r.status == 401
        assert (await r.json())["error_code"] == "UNAUTHORIZED"
    async with http.post(url, json={}, headers={"Authorization": "Bearer not-a-jwt"}) as r:
        assert r.status == 401
    secret = small_settings.jwt_secret
    assert secret is not None
    expired = issue_token(secret, "alice", ttl_seconds=-60)
    async with http.post(url, json={}, headers={"Authorization": f"Bearer {expired}"}) as r:
        assert r.status == 401
        assert "expired" in (await r.json())["error_message"]
    forged = issue_token("another-secret-of-at-least-32-bytes!", "alice")
    async with http.post(url, json={}, headers={"Authorization": f"Bearer {forged}"}) as r:
        assert r.status == 401

    session = await _session(http, ingest, filename="mine.mp4")
    upload_url = f"{ingest.url}{session['upload_url']}"
    async with http.get(upload_url, headers=ingest.auth("mallory")) as r:
        assert r.status == 403
    async with http.put(upload_url, data=fake_video(4096), headers=ingest.auth("mallory")) as r:
        assert r.status == 403

    async with http.put(upload_url, data=fake_video(4096), headers=ingest.auth("alice")) as r:
        assert r.status == 201, await r.text()
    async with http.put(upload_url, data=fake_video(4096), headers=ingest.auth("alice")) as r:
        assert r.status == 409
        assert (await r.json())["error_code"] == "SESSION_ALREADY_USED"

    async with http.get(f"{ingest.url}/v1/uploads/{'0' * 32}", headers=ingest.auth("alice")) as r:
        assert r.status == 404


async def test_an_expired_session_answers_404(
    settings: IngestSettings, http: aiohttp.ClientSession
) -> None:
    short = msgspec.structs.replace(settings, session_ttl_seconds=0.5)
    async with running_ingest(short) as ingest:
        session = await _session(http, ingest, filename="late.mp4")
        await asyncio.sleep(1.0)
        async with http.put(
            f"{ingest.url}{session['upload_url']}",
            data=fake_video(4096),
            headers=ingest.auth("alice"),
        ) as r:
            assert r.status == 404
            assert (await r.json())["error_code"] == "SESSION_EXPIRED"
        async with http.get(
            f"{ingest.url}{session['upload_url']}", headers=ingest.auth("alice")
        ) as r:
            assert (await r.json())["status"] == "expired"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"priority": 11}, "priority"),
        ({"priority": "high"}, "priority"),
        ({"expected_file_size": -1}, "expected_file_size"),
        ({"file_hash": "abc"}, "file_hash"),
        ({"file_format": "exe"}, "file_format"),
        ({"filename": "notes.txt"}, "filename"),
        ({"expected_file_size": MAX + 1}, "expected_file_size"),
    ],
)
async def test_bad_session_fields_get_400_naming_the_field(
    ingest: RunningIngest, http: aiohttp.ClientSession, body: dict[str, object], field: str
) -> None:
    async with http.post(f"{ingest.url}/v1/uploads", json=body, headers=ingest.auth("alice")) as r:
        assert r.status == 400, await r.text()
        error = await r.json()
    assert error["details"]["field"] == field
    assert set(error) == {"error_code", "error_message", "details", "timestamp"}


async def test_malformed_json_gets_400(ingest: RunningIngest, http: aiohttp.ClientSession) -> None:
    async with http.post(
        f"{ingest.url}/v1/uploads", data=b"{not json", headers=ingest.auth("alice")
    ) as r:
        assert r.status == 400
        assert (await r.json())["error_code"] == "INVALID_REQUEST"


async def test_cancel_through_a_second_instance_stops_the_upload_on_the_first(
    ingest: RunningIngest, http: aiohttp.ClientSession, small_settings: IngestSettings
) -> None:
    session = await _session(http, ingest, filename="slow.mp4")
    session_id = session["session_id"]
    key = await _key_of(http, ingest, session_id)

    async def trickle() -> AsyncIterator[bytes]:
        for chunk in fake_video_chunks(MAX - MiB, seed=6, chunk=256 * 1024):
            yield chunk
            await asyncio.sleep(0.05)

    async def upload() -> tuple[int, dict[str, str]]:
        try:
            async with http.put(
                f"{ingest.url}{session['upload_url']}", data=trickle(), headers=ingest.auth("alice")
            ) as response:
                return response.status, await response.json()
        except aiohttp.ClientError as error:  # the server may close the stream it cancelled
            return 0, {"error_code": repr(error)}

    streaming = asyncio.create_task(upload())
    await upload_events(
        small_settings, session_id, until=lambda es: any(isinstance(e, UploadStarted) for e in es)
    )
    # Another process: another instance id, so the cancel must travel between instances.
    elsewhere = msgspec.structs.replace(small_settings, instance_id="second-instance")
    async with running_ingest(elsewhere) as second:
        cancelled_at = time.monotonic()
        async with http.delete(
            f"{second.url}/v1/uploads/{session_id}", headers=second.auth("alice")
        ) as r:
            assert r.status == 204
        status, body = await asyncio.wait_for(streaming, timeout=10)
        stopped_after = time.monotonic() - cancelled_at
    assert stopped_after < 3.0, f"the upload went on for {stopped_after:.1f}s after the cancel"
    assert status in (409, 0), body
    events = await upload_events(small_settings, session_id, until=ended)
    assert isinstance(events[-1], UploadCancelled)
    assert await open_uploads(small_settings, key) == []
    assert not await object_exists(small_settings, key)


async def test_a_client_that_stops_sending_times_out_and_leaves_nothing(
    settings: IngestSettings, http: aiohttp.ClientSession
) -> None:
    impatient = msgspec.structs.replace(settings, body_idle_timeout_seconds=1.0)
    async with running_ingest(impatient) as ingest:
        session = await _session(http, ingest, filename="stalled.mp4")
        key = await _key_of(http, ingest, session["session_id"])
        reader, writer = await open_request(
            ingest.port,
            "PUT",
            session["upload_url"],
            {**ingest.auth("alice"), "Content-Length": str(12 * MiB)},
        )
        for chunk in fake_video_chunks(9 * MiB, seed=9):
            writer.write(chunk)
        await writer.drain()
        response = await read_response(reader, within=15)  # the client now sends nothing
        writer.close()
    assert response.status == 408
    assert response.json()["error_code"] == "TIMEOUT"
    await _failed_with(settings, session["session_id"], "TIMEOUT")
    assert await open_uploads(settings, key) == []
