"""What a client declares, when it creates a session or in the body's integrity fields
(`Repr-Digest`, `Content-Digest`), is held against the body it sends.

A body shorter than `expected_file_size` is refused with SIZE_MISMATCH, and a
body whose SHA-256 is not the declared `file_hash` with CHECKSUM_MISMATCH; in
both cases nothing is kept: no object, no open multipart upload.
"""

from __future__ import annotations

import base64
import secrets
from typing import Any

import aiohttp
import pytest

from ingest.settings import IngestSettings
from schemas import UploadFailed
from tests.integration.harness import (
    RunningIngest,
    bucket_keys,
    ended,
    open_uploads,
    upload_events,
)
from tests.media import MiB, async_chunks, fake_video, fake_video_chunks, sha256_of


async def _session(
    http: aiohttp.ClientSession, ingest: RunningIngest, user: str, **fields: object
) -> tuple[str, str]:
    async with http.post(f"{ingest.url}/v1/uploads", json=fields, headers=ingest.auth(user)) as r:
        assert r.status == 201, await r.text()
        sid: str = (await r.json())["session_id"]
    session, _ = await ingest.services.sessions.load(sid)
    return sid, session.s3_key


async def _refused(response: aiohttp.ClientResponse, status: int, code: str) -> dict[str, Any]:
    body: dict[str, Any] = await response.json()
    assert response.status == status, body
    assert set(body) == {"error_code", "error_message", "details", "timestamp"}
    assert body["error_code"] == code, body
    return body


async def _nothing_kept(
    http: aiohttp.ClientSession,
    ingest: RunningIngest,
    settings: IngestSettings,
    user: str,
    sid: str,
    key: str,
) -> None:
    async with http.get(f"{ingest.url}/v1/uploads/{sid}", headers=ingest.auth(user)) as r:
        assert (await r.json())["status"] == "failed"
    assert await open_uploads(settings, key) == []
    assert await bucket_keys(settings, key) == []


async def test_a_content_length_under_the_declared_size_is_refused_before_reading(
    ingest: RunningIngest, http: aiohttp.ClientSession, settings: IngestSettings
) -> None:
    user = "short-declared"
    sid, key = await _session(http, ingest, user, filename="a.mp4", expected_file_size=2 * MiB)
    async with http.put(
        f"{ingest.url}/v1/uploads/{sid}",
        data=fake_video(MiB, seed=secrets.randbits(32)),
        headers={**ingest.auth(user), "Content-Type": "video/mp4"},
    ) as response:
        refusal = await _refused(response, 400, "SIZE_MISMATCH")
        assert refusal["details"]["expected_file_size"] == 2 * MiB
    await _nothing_kept(http, ingest, settings, user, sid, key)


@pytest.mark.parametrize("parts", [0, 2], ids=["one-put", "multipart"])
async def test_a_body_ending_short_of_the_declared_size_keeps_nothing(
    ingest: RunningIngest, http: aiohttp.ClientSession, settings: IngestSettings, parts: int
) -> None:
    user = "short-body"
    sent = parts * settings.part_size + MiB
    declared = sent + settings.part_size
    sid, key = await _session(http, ingest, user, filename="a.mp4", expected_file_size=declared)
    # Chunked: no Content-Length, so the shortfall shows only when the body ends.
    body = async_chunks(fake_video_chunks(sent, seed=secrets.randbits(32)))
    async with http.put(
        f"{ingest.url}/v1/uploads/{sid}",
        data=body,
        headers={**ingest.auth(user), "Content-Type": "video/mp4"},
    ) as response:
        refusal = await _refused(response, 400, "SIZE_MISMATCH")
        assert refusal["details"] == {"declared_size": declared, "received": sent}
    events = await upload_events(settings, sid, until=ended)
    assert isinstance(events[-1], UploadFailed), events
    await _nothing_kept(http, ingest, settings, user, sid, key)


@pytest.mark.parametrize("parts", [0, 2], ids=["one-put", "multipart"])
async def test_a_body_that_is_not_the_declared_file_keeps_nothing(
    ingest: RunningIngest, http: aiohttp.ClientSession, settings: IngestSettings, parts: int
) -> None:
    user = "wrong-hash"
    size = parts * settings.part_size + MiB
    seed = secrets.randbits(32)
    declared = sha256_of(size, seed=seed + 1)
    sid, key = await _session(http, ingest, user, filename="a.mp4", file_hash=declared)
    async with http.put(
        f"{ingest.url}/v1/uploads/{sid}",
        data=async_chunks(fake_video_chunks(size, seed=seed)),
        headers={**ingest.auth(user), "Content-Type": "video/mp4"},
    ) as response:
        refusal = await _refused(response, 400, "CHECKSUM_MISMATCH")
        assert refusal["details"]["expected_sha256"] == declared
        assert refusal["details"]["computed_sha256"] == sha256_of(size, seed=seed)
    events = await upload_events(settings, sid, until=ended)
    last = events[-1]
    assert isinstance(last, UploadFailed), events
    assert last.error_code == "CHECKSUM_MISMATCH"
    await _nothing_kept(http, ingest, settings, user, sid, key)


async def test_a_body_that_is_the_declared_file_is_stored(
    ingest: RunningIngest, http: aiohttp.ClientSession, settings: IngestSettings
) -> None:
    user = "right-hash"
    size, seed = settings.part_size + MiB, secrets.randbits(32)
    declared = sha256_of(size, seed=seed)
    sid, key = await _session(
        http, ingest, user, filename="a.mp4", file_hash=declared.upper(), expected_file_size=size
    )
    async with http.put(
        f"{ingest.url}/v1/uploads/{sid}",
        data=async_chunks(fake_video_chunks(size, seed=seed)),
        headers={**ingest.auth(user), "Content-Type": "video/mp4"},
    ) as response:
        assert response.status == 201, await response.text()
        assert (await response.json())["file_hash"] == declared
    assert await bucket_keys(settings, key) == [key]


def _digest_field(hex_digest: str) -> str:
    """An RFC 9530 dictionary member: `sha-256=:<base64>:`."""
    return f"sha-256=:{base64.b64encode(bytes.fromhex(hex_digest)).decode()}:"


@pytest.mark.parametrize("field", ["Repr-Digest", "Content-Digest"])
async def test_a_matching_digest_field_is_accepted(
    ingest: RunningIngest, http: aiohttp.ClientSession, settings: IngestSettings, field: str
) -> None:
    user = "digest-ok"
    size, seed = MiB, secrets.randbits(32)
    sid, key = await _session(http, ingest, user, filename="a.mp4")
    # Other algorithms beside it are ignored, whatever they hold.
    value = f"sha-512=:AAAA:, {_digest_field(sha256_of(size, seed=seed))}"
    async with http.put(
        f"{ingest.url}/v1/uploads/{sid}",
        data=fake_video(size, seed=seed),
        headers={**ingest.auth(user), "Content-Type": "video/mp4", field: value},
    ) as response:
        assert response.status == 201, await response.text()
        assert (await response.json())["file_hash"] == sha256_of(size, seed=seed)
    assert await bucket_keys(settings, key) == [key]


@pytest.mark.parametrize("parts", [0, 2], ids=["one-put", "multipart"])
@pytest.mark.parametrize("field", ["Repr-Digest", "Content-Digest"])
async def test_a_digest_field_the_body_does_not_match_keeps_nothing(
    ingest: RunningIngest,
    http: aiohttp.ClientSession,
    settings: IngestSettings,
    parts: int,
    field: str,
) -> None:
    user = "digest-wrong"
    size = parts * settings.part_size + MiB
    seed = secrets.randbits(32)
    declared = sha256_of(size, seed=seed + 1)
    sid, key = await _session(http, ingest, user, filename="a.mp4")
    async with http.put(
        f"{ingest.url}/v1/uploads/{sid}",
        data=async_chunks(fake_video_chunks(size, seed=seed)),
        headers={**ingest.auth(user), "Content-Type": "video/mp4", field: _digest_field(declared)},
    ) as response:
        refusal = await _refused(response, 400, "CHECKSUM_MISMATCH")
        assert refusal["details"]["expected_sha256"] == declared
        assert refusal["details"]["computed_sha256"] == sha256_of(size, seed=seed)
    events = await upload_events(settings, sid, until=ended)
    assert isinstance(events[-1], UploadFailed), events
    await _nothing_kept(http, ingest, settings, user, sid, key)


async def test_a_digest_field_disagreeing_with_file_hash_is_refused_before_the_body(
    ingest: RunningIngest, http: aiohttp.ClientSession, settings: IngestSettings
) -> None:
    user = "digest-disagrees"
    seed = secrets.randbits(32)
    sid, key = await _session(
        http, ingest, user, filename="a.mp4", file_hash=sha256_of(MiB, seed=seed)
    )
    other = _digest_field(sha256_of(MiB, seed=seed + 1))
    async with http.put(
        f"{ingest.url}/v1/uploads/{sid}",
        data=fake_video(MiB, seed=seed),
        headers={**ingest.auth(user), "Content-Type": "video/mp4", "Repr-Digest": other},
    ) as response:
        refusal = await _refused(response, 400, "CHECKSUM_MISMATCH")
        assert len(refusal["details"]["declared_sha256"]) == 2
    await _nothing_kept(http, ingest, settings, user, sid, key)


@pytest.mark.parametrize(
    "value",
    [
        "sha-256=X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=",  # a token, not a byte sequence
        "sha-256=:AAAA:",  # 3 bytes, not 32
        "sha-256=:not base64!:",
        "SHA-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",  # keys are lower case
        "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=: trailing",
    ],
)
async def test_a_malformed_digest_field_is_a_400_and_leaves_the_session_usable(
    ingest: RunningIngest, http: aiohttp.ClientSession, settings: IngestSettings, value: str
) -> None:
    user = "digest-malformed"
    sid, key = await _session(http, ingest, user, filename="a.mp4")
    async with http.put(
        f"{ingest.url}/v1/uploads/{sid}",
        data=fake_video(MiB, seed=5),
        headers={**ingest.auth(user), "Content-Type": "video/mp4", "Content-Digest": value},
    ) as response:
        refusal = await _refused(response, 400, "INVALID_REQUEST")
        assert refusal["details"] == {"field": "Content-Digest"}
    async with http.get(f"{ingest.url}/v1/uploads/{sid}", headers=ingest.auth(user)) as r:
        assert (await r.json())["status"] == "active"
    assert await bucket_keys(settings, key) == []
