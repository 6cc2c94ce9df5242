"""The quota, enforced by an instance from published snapshots plus its own uploads in flight.

Usage is simulated by publishing `QuotaUpdated` snapshots to the module's quota
topic, as the quota consumer does; the server reads them like any other.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import msgspec
import pytest

from ingest.settings import IngestSettings
from schemas import QuotaUpdated, UploadFailed
from tests.integration.harness import (
    RunningIngest,
    bucket_keys,
    ended,
    running_ingest,
    upload_events,
)
from tests.media import MiB, async_chunks, fake_video_chunks

LIMIT = 40 * MiB
UPLOADS = 10


@pytest.fixture
def quota_settings(settings: IngestSettings) -> IngestSettings:
    return msgspec.structs.replace(
        settings,
        max_file_size=30 * MiB,
        part_size=5 * MiB,
        quota_bytes=LIMIT,
        quota_uploads=UPLOADS,
        session_ttl_seconds=120.0,
    )


@pytest.fixture
async def ingest(quota_settings: IngestSettings) -> AsyncIterator[RunningIngest]:
    async with running_ingest(quota_settings) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _using(ingest: RunningIngest, *, bytes_used: int = 0, uploads_used: int = 0) -> str:
    """A new user whose published snapshot says they used that much; once the server saw it."""
    user = f"quota-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    await ingest.services.sink.emit(
        QuotaUpdated(
            user_id=user,
            period_start=now - timedelta(days=1),
            period_end=now + timedelta(days=29),
            bytes_used=bytes_used,
            bytes_limit=LIMIT,
            uploads_used=uploads_used,
            uploads_limit=UPLOADS,
            updated_at=now,
        )
    )
    async with asyncio.timeout(20):
        while ingest.services.quota.status(user).bytes_used != bytes_used:
            await asyncio.sleep(0.1)
    return user


async def _create(
    http: aiohttp.ClientSession, ingest: RunningIngest, user: str, **fields: object
) -> tuple[int, dict[str, Any]]:
    path = fields.pop("path", "/v1/uploads")
    async with http.post(f"{ingest.url}{path}", json=fields, headers=ingest.auth(user)) as r:
        body: dict[str, Any] = await r.json()
        return r.status, body


async def test_open_sessions_count_their_declared_bytes(
    ingest: RunningIngest, http: aiohttp.ClientSession
) -> None:
    user = await _using(ingest, bytes_used=LIMIT - 25 * MiB, uploads_used=1)
    for path in ("/v1/uploads", "/v1/dashboard/upload/initiate"):
        status, body = await _create(
            http, ingest, user, path=path, filename="a.mp4", expected_file_size=10 * MiB
        )
        assert status == 201, body
    # 15 MiB used, 20 MiB held by the open sessions: 5 MiB are left, not 25.
    for path in ("/v1/uploads", "/v1/dashboard/upload/initiate"):
        status, body = await _create(
            http, ingest, user, path=path, filename="b.mp4", expected_file_size=6 * MiB
        )
        assert status == 429, body
        assert body["error_code"] == "QUOTA_EXCEEDED"
        details = body["details"]
        assert details["limit"] == LIMIT
        assert details["used"] == LIMIT - 5 * MiB
        assert details["requested"] == 6 * MiB
        assert details["reset_date"] == ingest.services.quota.status(user).period_end
    status, body = await _create(http, ingest, user, filename="c.mp4", expected_file_size=5 * MiB)
    assert status == 201, body


async def test_open_sessions_count_against_the_upload_limit(
    ingest: RunningIngest, http: aiohttp.ClientSession
) -> None:
    user = await _using(ingest, bytes_used=0, uploads_used=UPLOADS - 2)
    created = []
    for _ in range(2):
        status, body = await _create(http, ingest, user, filename="clip.mp4")
        assert status == 201, body
        created.append(body["session_id"])
    status, body = await _create(http, ingest, user, filename="clip.mp4")
    assert status == 429, body
    assert body["error_code"] == "QUOTA_EXCEEDED"
    assert body["details"]["uploads_used"] == UPLOADS
    assert body["details"]["uploads_limit"] == UPLOADS
    # A cancelled session gives its place back.
    async with http.delete(f"{ingest.url}/v1/uploads/{created[0]}", headers=ingest.auth(user)) as r:
        assert r.status == 204
    status, body = await _create(http, ingest, user, filename="clip.mp4")
    assert status == 201, body


async def test_tus_creation_counts_the_sessions_in_flight(
    ingest: RunningIngest, http: aiohttp.ClientSession
) -> None:
    user = await _using(ingest, bytes_used=LIMIT - 12 * MiB)
    status, body = await _create(http, ingest, user, filename="a.mp4", expected_file_size=8 * MiB)
    assert status == 201, body
    headers = {
        **ingest.auth(user),
        "Tus-Resumable": "1.0.0",
        "Upload-Length": str(5 * MiB),
        "Upload-Metadata": "filename " + base64.b64encode(b"t.mp4").decode(),
    }
    async with http.post(f"{ingest.url}/v1/tus/", headers=headers) as r:
        assert r.status == 429, await r.text()
        assert "Location" not in r.headers
        assert (await r.json())["error_code"] == "QUOTA_EXCEEDED"
    # A tus upload holds its length against the sessions after it, too.
    headers["Upload-Length"] = str(4 * MiB)
    async with http.post(f"{ingest.url}/v1/tus/", headers=headers) as r:
        assert r.status == 201, await r.text()
    status, body = await _create(http, ingest, user, filename="b.mp4", expected_file_size=MiB)
    assert status == 429, body


async def test_a_body_is_stopped_on_the_byte_past_the_quota_and_nothing_is_kept(
    ingest: RunningIngest, http: aiohttp.ClientSession, quota_settings: IngestSettings
) -> None:
    user = await _using(ingest, bytes_used=LIMIT - 12 * MiB)
    # Another open session holds 4 MiB: 8 MiB are left for a body of unknown size.
    status, body = await _create(http, ingest, user, filename="a.mp4", expected_file_size=4 * MiB)
    assert status == 201, body
    status, body = await _create(http, ingest, user, filename="big.mp4")
    assert status == 201, body
    session_id = body["session_id"]
    session, _ = await ingest.services.sessions.load(session_id)
    # Chunked, so no size is known before the bytes: a multipart upload is open when it stops.
    async with http.put(
        f"{ingest.url}/v1/uploads/{session_id}",
        data=async_chunks(fake_video_chunks(20 * MiB, seed=3, chunk=256 * 1024)),
        headers=ingest.auth(user),
    ) as r:
        assert r.status == 429, await r.text()
        assert (await r.json())["error_code"] == "QUOTA_EXCEEDED"
    events = await upload_events(quota_settings, session_id, until=ended)
    assert isinstance(events[-1], UploadFailed)
    assert events[-1].error_code == "QUOTA_EXCEEDED"
    # No object, no multipart upload, no part: aborted.
    assert not [k for k in await bucket_keys(quota_settings) if k == session.s3_key]
    # Its bytes are no longer held: a new 8 MiB session fits again.
    status, body = await _create(http, ingest, user, filename="c.mp4", expected_file_size=8 * MiB)
    assert status == 201, body
