"""Malformed and hostile input: always a 4xx in the JSON error shape, never a 500,
and a broken body leaves nothing stored.

Each case is sent through HTTP to the real stack; the raw-socket helper sends what
a polite client library would refuse to (oversized headers, broken multipart).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import msgspec
import pytest

from ingest.settings import IngestSettings
from tests.integration.harness import RunningIngest, bucket_keys, open_uploads
from tests.integration.rawhttp import RawResponse, open_request, read_response
from tests.media import MiB, fake_video

ERROR_FIELDS = {"error_code", "error_message", "details", "timestamp"}


def _assert_error(status: int, body: dict[str, Any], expected: int, code: str) -> None:
    assert status == expected, body
    assert set(body) == ERROR_FIELDS, body
    assert body["error_code"] == code, body


async def _session(
    http: aiohttp.ClientSession, ingest: RunningIngest, user: str, **fields: object
) -> dict[str, Any]:
    async with http.post(f"{ingest.url}/v1/uploads", json=fields, headers=ingest.auth(user)) as r:
        assert r.status == 201, await r.text()
        created: dict[str, Any] = await r.json()
        return created


async def _status(http: aiohttp.ClientSession, ingest: RunningIngest, user: str, sid: str) -> str:
    async with http.get(f"{ingest.url}/v1/uploads/{sid}", headers=ingest.auth(user)) as r:
        assert r.status == 200, await r.text()
        status: str = (await r.json())["status"]
        return status


async def test_invalid_utf8_in_session_json_is_a_400(
    ingest: RunningIngest, http: aiohttp.ClientSession
) -> None:
    body = b'{"filename": "clip\xff\xfe.mp4"}'
    headers = {**ingest.auth("utf8"), "Content-Type": "application/json"}
    async with http.post(f"{ingest.url}/v1/uploads", data=body, headers=headers) as response:
        _assert_error(response.status, await response.json(), 400, "INVALID_REQUEST")


@pytest.mark.parametrize("depth", [33, 5000])
async def test_deeply_nested_metadata_is_a_400_naming_the_field(
    ingest: RunningIngest, http: aiohttp.ClientSession, depth: int
) -> None:
    nested = "[" * depth + "]" * depth
    body = ('{"filename": "clip.mp4", "metadata": {"x": ' + nested + "}}").encode()
    headers = {**ingest.auth("deep"), "Content-Type": "application/json"}
    async with http.post(f"{ingest.url}/v1/uploads", data=body, headers=headers) as response:
        refusal = await response.json()
        _assert_error(response.status, refusal, 400, "INVALID_REQUEST")
        assert refusal["details"]["field"] == "metadata"
    async with http.get(f"{ingest.url}/v1/uploads", headers=ingest.auth("deep")) as listed:
        assert (await listed.json())["total"] == 0


async def test_metadata_nested_within_the_bound_is_kept(
    ingest: RunningIngest, http: aiohttp.ClientSession
) -> None:
    metadata: dict[str, Any] = {"leaf": 1}
    for _ in range(31):
        metadata = {"x": metadata}
    created = await _session(http, ingest, "shallow", filename="clip.mp4", metadata=metadata)
    assert created["session_id"]


def _form(boundary: str, content: bytes) -> bytes:
    return (
        (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="file"; filename="clip.mp4"\r\n'
            "Content-Type: video/mp4\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )


BROKEN_FORMS: dict[str, tuple[str, bytes]] = {
    "no boundary": ("multipart/form-data", _form("abc", b"x" * 4096)),
    "wrong boundary": ("multipart/form-data; boundary=expected", _form("other", b"x" * 4096)),
    "garbage": ("multipart/form-data; boundary=abc", b"\x00garbage\xff" * 1000),
    "part headers that never end": (
        "multipart/form-data; boundary=abc",
        b'--abc\r\nContent-Disposition: form-data; name="file"\r\n' + b"X-Pad: y\r\n" * 5000,
    ),
    "a part with no Content-Disposition": (
        "multipart/form-data; boundary=abc",
        _form("abc", b"x" * 4096).replace(
            b'Content-Disposition: form-data; name="file"; filename="clip.mp4"\r\n', b""
        ),
    ),
    "5000-character boundary": (
        "multipart/form-data; boundary=" + "b" * 5000,
        _form("b" * 5000, b"x" * 4096),
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN_FORMS))
async def test_broken_multipart_is_a_400_and_leaves_the_session_unused(
    ingest: RunningIngest, http: aiohttp.ClientSession, settings: IngestSettings, case: str
) -> None:
    user = "forms"
    created = await _session(http, ingest, user, filename="clip.mp4")
    sid = created["session_id"]
    key = (await ingest.services.sessions.load(sid))[0].s3_key
    content_type, body = BROKEN_FORMS[case]
    headers = {**ingest.auth(user), "Content-Type": content_type}
    async with http.post(f"{ingest.url}/v1/uploads/{sid}", data=body, headers=headers) as r:
        _assert_error(r.status, await r.json(), 400, "INVALID_REQUEST")
    # Refused before the file began: nothing was claimed, so the session may be used again.
    assert await _status(http, ingest, user, sid) == "active"
    assert await open_uploads(settings, key) == []
    assert await bucket_keys(settings, key) == []


async def test_multipart_broken_after_the_file_began_fails_and_keeps_nothing(
    ingest: RunningIngest, http: aiohttp.ClientSession, settings: IngestSettings
) -> None:
    user = "torn-form"
    created = await _session(http, ingest, user, filename="clip.mp4")
    sid = created["session_id"]
    key = (await ingest.services.sessions.load(sid))[0].s3_key
    start = (
        b"--abc\r\n"
        b'Content-Disposition: form-data; name="file"; filename="clip.mp4"\r\n'
        b"Content-Type: video/mp4\r\n\r\n"
    )
    # The file's content runs into the end of the body without its closing boundary.
    body = start + fake_video(6 * MiB, seed=3)
    headers = {**ingest.auth(user), "Content-Type": "multipart/form-data; boundary=abc"}
    async with http.post(f"{ingest.url}/v1/uploads/{sid}", data=body, headers=headers) as r:
        refusal = await r.json()
        assert 400 <= r.status < 500, refusal
        assert set(refusal) == ERROR_FIELDS
    assert await _status(http, ingest, user, sid) == "failed"
    assert await open_uploads(settings, key) == []
    assert await bucket_keys(settings, key) == []


async def test_oversized_header_is_answered_in_the_json_shape(ingest: RunningIngest) -> None:
    reader, writer = await open_request(
        ingest.port, "GET", "/v1/quota", {"X-Big": "a" * 10_000, "Connection": "close"}
    )
    try:
        response = await read_response(reader)
    finally:
        writer.close()
    assert response.status == 400
    assert response.headers["content-type"].startswith("application/json")
    body = msgspec.json.decode(response.body)
    _assert_error(response.status, body, 400, "BAD_REQUEST")
    assert "8190" in body["error_message"]
    assert response.headers.get("x-request-id")


async def _raw_exchange(port: int, request: bytes) -> RawResponse:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await read_response(reader)
    finally:
        writer.close()


def _head(method: str, target: bytes, *headers: bytes) -> bytes:
    lines = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1", *headers]
    return b"\r\n".join([*lines, b"Connection: close", b"", b""])


@pytest.mark.parametrize(
    "case",
    [
        "percent-encoded bytes in the path",
        "raw bytes in the path",
        "raw bytes in the token",
        "raw bytes in tus metadata",
        "raw bytes in Repr-Digest",
        "raw bytes in a query value",
        "raw bytes in Upload-Checksum",
        "raw bytes in the method override",
    ],
)
async def test_bytes_that_are_not_utf8_anywhere_in_the_head_get_a_4xx_json(
    ingest: RunningIngest, case: str
) -> None:
    auth = f"Authorization: Bearer {ingest.token('bytes')}".encode()
    requests = {
        "percent-encoded bytes in the path": _head("GET", b"/v1/uploads/%ff%fe", auth),
        "raw bytes in the path": _head("GET", b"/v1/uploads/\xff\xfe", auth),
        "raw bytes in the token": _head("GET", b"/v1/quota", b"Authorization: Bearer \xff\xfe.x.y"),
        "raw bytes in tus metadata": _head(
            "POST",
            b"/v1/tus/",
            auth,
            b"Tus-Resumable: 1.0.0",
            b"Upload-Length: 4096",
            b"Upload-Metadata: filename \xff\xfe",
        ),
        "raw bytes in Repr-Digest": _head(
            "PUT",
            b"/v1/uploads/0123456789abcdef0123456789abcdef",
            auth,
            b"Content-Length: 0",
            b"Repr-Digest: sha-256=:\xff:",
        ),
        "raw bytes in a query value": _head("GET", b"/v1/uploads?status=\xff", auth),
        "raw bytes in Upload-Checksum": _head(
            "PATCH",
            b"/v1/tus/0123456789abcdef0123456789abcdef",
            auth,
            b"Tus-Resumable: 1.0.0",
            b"Upload-Offset: 0",
            b"Content-Type: application/offset+octet-stream",
            b"Content-Length: 0",
            b"Upload-Checksum: sha256 \xff\xfe",
        ),
        "raw bytes in the method override": _head(
            "POST",
            b"/v1/tus/0123456789abcdef0123456789abcdef",
            auth,
            b"Tus-Resumable: 1.0.0",
            b"Content-Length: 0",
            b"X-HTTP-Method-Override: PATCH\xff",
        ),
    }
    response = await _raw_exchange(ingest.port, requests[case])
    assert 400 <= response.status < 500, (response.status, response.body)
    assert response.headers["content-type"].startswith("application/json")
    assert set(response.json()) == ERROR_FIELDS


async def test_more_headers_than_the_server_takes_is_a_400_json(ingest: RunningIngest) -> None:
    many = [f"X-Filler-{n}: {'v' * 50}".encode() for n in range(200)]
    response = await _raw_exchange(ingest.port, _head("GET", b"/v1/quota", *many))
    assert response.status == 400, response.body
    _assert_error(response.status, response.json(), 400, "BAD_REQUEST")


@pytest.mark.parametrize("form", [False, True], ids=["raw", "multipart"])
async def test_a_file_content_type_that_is_not_ascii_is_a_400_before_the_body(
    ingest: RunningIngest, http: aiohttp.ClientSession, settings: IngestSettings, form: bool
) -> None:
    """It would be stored with the object and published in events, which cannot carry it."""
    user = "odd-type"
    created = await _session(http, ingest, user, filename="clip.mp4")
    sid = created["session_id"]
    video = fake_video(64 * 1024, seed=9)
    if form:
        body = _form("abc", video).replace(b"video/mp4", b"video/\xffmp4")
        content_type = b"multipart/form-data; boundary=abc"
    else:
        body, content_type = video, b"video/\xffmp4"
    head = _head(
        "PUT",
        f"/v1/uploads/{sid}".encode(),
        f"Authorization: Bearer {ingest.token(user)}".encode(),
        b"Content-Type: " + content_type,
        f"Content-Length: {len(body)}".encode(),
    )
    response = await _raw_exchange(ingest.port, head + body)
    _assert_error(response.status, response.json(), 400, "INVALID_REQUEST")
    assert response.json()["details"] == {"field": "Content-Type"}
    assert await _status(http, ingest, user, sid) == "active"
    key = (await ingest.services.sessions.load(sid))[0].s3_key
    assert await bucket_keys(settings, key) == []


@pytest.mark.parametrize(
    ("method", "path", "extra"),
    [
        ("GET", b"/v1/quota", ()),
        ("PUT", b"/v1/uploads/0123456789abcdef0123456789abcdef", (b"Content-Length: 0",)),
        ("POST", b"/v1/tus/", (b"Tus-Resumable: 1.0.0", b"Upload-Length: 4096")),
        ("PATCH", b"/v1/tus/0123456789abcdef0123456789abcdef", (b"Tus-Resumable: 1.0.0",)),
    ],
)
async def test_an_expectation_other_than_100_continue_is_a_417_json(
    ingest: RunningIngest, method: str, path: bytes, extra: tuple[bytes, ...]
) -> None:
    auth = f"Authorization: Bearer {ingest.token('expects')}".encode()
    response = await _raw_exchange(
        ingest.port, _head(method, path, auth, b"Expect: the-moon", *extra)
    )
    _assert_error(response.status, response.json(), 417, "EXPECTATION_FAILED")
    if path.startswith(b"/v1/tus/"):
        assert response.headers["tus-resumable"] == "1.0.0"
