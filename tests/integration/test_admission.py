"""One rule book for every way in, through real ingest servers on MinIO and Kafka.

A file name no session may have is refused by `POST /v1/uploads`, by its
dashboard alias and by tus creation (with and without a body) with the same
error, and nothing of it is stored: no session, no object, no part, no tail.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from infra import layout
from ingest.settings import IngestSettings
from tests.integration.harness import RunningIngest, bucket_keys, running_ingest
from tests.media import fake_video

USER = "exe-sender"
SIZE = 64 * 1024
OFFSET_STREAM = "application/offset+octet-stream"


@pytest.fixture
async def ingest(settings: IngestSettings) -> AsyncIterator[RunningIngest]:
    async with running_ingest(settings) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def _tus_creation(ingest: RunningIngest, filename: str) -> dict[str, str]:
    encoded = base64.b64encode(filename.encode()).decode()
    return {
        **ingest.auth(USER),
        "Tus-Resumable": "1.0.0",
        "Upload-Length": str(SIZE),
        "Upload-Metadata": f"filename {encoded}",
    }


async def _refusal(response: aiohttp.ClientResponse) -> tuple[int, dict[str, Any]]:
    body: dict[str, Any] = await response.json()
    return response.status, body


async def test_payload_exe_is_refused_by_every_way_in_and_nothing_is_stored(
    ingest: RunningIngest, http: aiohttp.ClientSession, settings: IngestSettings
) -> None:
    refusals: list[tuple[int, dict[str, Any]]] = []
    for path in ("/v1/uploads", "/v1/dashboard/upload/initiate"):
        async with http.post(
            f"{ingest.url}{path}",
            json={"filename": "payload.exe", "expected_file_size": SIZE},
            headers=ingest.auth(USER),
        ) as response:
            refusals.append(await _refusal(response))

    async with http.post(
        f"{ingest.url}/v1/tus/", headers=_tus_creation(ingest, "payload.exe")
    ) as response:
        assert response.headers["Tus-Resumable"] == "1.0.0"
        assert "Location" not in response.headers
        refusals.append(await _refusal(response))
    # creation-with-upload: the body is never read into anything.
    async with http.post(
        f"{ingest.url}/v1/tus/",
        data=fake_video(SIZE, seed=7),
        headers={**_tus_creation(ingest, "payload.exe"), "Content-Type": OFFSET_STREAM},
    ) as response:
        assert "Location" not in response.headers
        refusals.append(await _refusal(response))

    for status, body in refusals:
        assert status == 400, body
        assert body["error_code"] == "FORMAT_NOT_ALLOWED"
        assert "'exe' is not allowed" in body["error_message"]
        assert body["details"]["allowed_formats"] == list(settings.allowed_formats)

    async with http.get(f"{ingest.url}/v1/uploads", headers=ingest.auth(USER)) as listed:
        assert (await listed.json())["total"] == 0
    assert await bucket_keys(settings, layout.UPLOADS_PREFIX) == []
    assert await bucket_keys(settings, layout.TUS_PREFIX) == []
    assert await bucket_keys(settings, layout.STATE_PREFIX) == []

    # The same requests with a video's name are accepted: the name was the reason.
    async with http.post(
        f"{ingest.url}/v1/uploads",
        json={"filename": "clip.mp4", "expected_file_size": SIZE},
        headers=ingest.auth(USER),
    ) as response:
        assert response.status == 201, await response.text()
    async with http.post(
        f"{ingest.url}/v1/tus/", headers=_tus_creation(ingest, "clip.mp4")
    ) as response:
        assert response.status == 201, await response.text()
