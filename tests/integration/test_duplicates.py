"""One file uploaded twice at once by one user: one original, one duplicate, one object kept."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from ingest.settings import IngestSettings
from schemas import UploadCompleted
from tests.integration.harness import (
    RunningIngest,
    ended,
    object_exists,
    running_ingest,
    upload_events,
)
from tests.media import MiB, fake_video_chunks


@pytest.fixture
async def ingest(settings: IngestSettings) -> AsyncIterator[RunningIngest]:
    async with running_ingest(settings) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _held_back(chunks: list[bytes], sent: asyncio.Event, go: asyncio.Event) -> Any:
    """The body but its last chunk, which waits for `go`: both uploads are streaming at once."""
    for chunk in chunks[:-1]:
        yield chunk
    sent.set()
    await go.wait()
    yield chunks[-1]


async def test_two_concurrent_uploads_of_one_file_store_it_once(
    ingest: RunningIngest, http: aiohttp.ClientSession, settings: IngestSettings
) -> None:
    auth = ingest.auth("twice")
    chunks = list(fake_video_chunks(12 * MiB, seed=41))
    sessions = []
    for name in ("a.mp4", "b.mp4"):
        async with http.post(
            f"{ingest.url}/v1/uploads", json={"filename": name}, headers=auth
        ) as r:
            assert r.status == 201, await r.text()
            sessions.append((await r.json())["session_id"])
    go = asyncio.Event()
    sent = [asyncio.Event(), asyncio.Event()]

    async def put(session_id: str, ready: asyncio.Event) -> dict[str, Any]:
        async with http.put(
            f"{ingest.url}/v1/uploads/{session_id}",
            data=_held_back(chunks, ready, go),
            headers=auth,
        ) as r:
            assert r.status == 201, await r.text()
            body: dict[str, Any] = await r.json()
            return body

    running = [asyncio.create_task(put(s, e)) for s, e in zip(sessions, sent, strict=True)]
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in sent)), 30)
    go.set()
    results = await asyncio.gather(*running)

    originals = [r for r in results if r["duplicate_of"] is None]
    duplicates = [r for r in results if r["duplicate_of"] is not None]
    assert len(originals) == 1, results
    assert len(duplicates) == 1, results
    original, duplicate = originals[0], duplicates[0]
    assert duplicate["duplicate_of"] == original["video_id"]
    assert duplicate["file_hash"] == original["file_hash"]
    # One object: the duplicate's copy is gone and its result names the original's.
    assert duplicate["s3_key"] == original["s3_key"]
    keys = [(await ingest.services.sessions.load(s))[0].s3_key for s in sessions]
    assert [await object_exists(settings, k) for k in keys].count(True) == 1
    assert await object_exists(settings, original["s3_key"])

    # The completed events say which is which, so the quota consumer charges the file once.
    completed = []
    for session_id in sessions:
        events = await upload_events(settings, session_id, until=ended)
        assert isinstance(events[-1], UploadCompleted), events
        completed.append(events[-1])
    assert sorted(str(e.duplicate_of) for e in completed) == sorted(["None", original["video_id"]])
