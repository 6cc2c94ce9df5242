"""Graceful shutdown: uploads in flight may finish within the grace period; the rest are
stopped cleanly, their parts removed and their failure published."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import msgspec

from ingest.settings import IngestSettings
from schemas import UploadCompleted, UploadFailed, UploadStarted
from tests.integration.harness import (
    RunningIngest,
    ended,
    open_uploads,
    running_ingest,
    upload_events,
)
from tests.media import MiB, fake_video_chunks


def _trickle(size: int, pause: float) -> AsyncIterator[bytes]:
    async def chunks() -> AsyncIterator[bytes]:
        for chunk in fake_video_chunks(size, seed=31, chunk=256 * 1024):
            yield chunk
            await asyncio.sleep(pause)

    return chunks()


async def _start_upload(
    http: aiohttp.ClientSession, ingest: RunningIngest, body: AsyncIterator[bytes]
) -> tuple[str, asyncio.Task[int]]:
    auth = ingest.auth("leaver")
    async with http.post(f"{ingest.url}/v1/uploads", json={"filename": "x.mp4"}, headers=auth) as r:
        session = await r.json()

    async def put() -> int:
        try:
            async with http.put(
                f"{ingest.url}{session['upload_url']}", data=body, headers=auth
            ) as r:
                return r.status
        except aiohttp.ClientError:
            return 0

    return session["session_id"], asyncio.create_task(put())


async def test_an_upload_that_finishes_within_the_grace_period_completes(
    settings: IngestSettings,
) -> None:
    graceful = msgspec.structs.replace(settings, shutdown_grace_seconds=20.0)
    async with aiohttp.ClientSession() as http, running_ingest(graceful) as ingest:
        session_id, upload = await _start_upload(http, ingest, _trickle(4 * MiB, 0.1))
        await upload_events(
            settings, session_id, until=lambda es: any(isinstance(e, UploadStarted) for e in es)
        )
        await ingest.stop()
        assert await upload == 201
    events = await upload_events(settings, session_id, until=ended)
    assert isinstance(events[-1], UploadCompleted)


async def test_an_upload_still_running_after_the_grace_period_is_stopped_cleanly(
    settings: IngestSettings,
) -> None:
    hasty = msgspec.structs.replace(settings, shutdown_grace_seconds=0.5)
    async with aiohttp.ClientSession() as http, running_ingest(hasty) as ingest:
        session_id, upload = await _start_upload(http, ingest, _trickle(60 * MiB, 0.05))
        await upload_events(
            settings, session_id, until=lambda es: any(isinstance(e, UploadStarted) for e in es)
        )
        key = (await ingest.services.sessions.load(session_id))[0].s3_key
        await asyncio.sleep(2.5)  # long enough for a part to be stored
        await ingest.stop()
        status = await upload
        assert status != 201
        stored = (await ingest.services.sessions.load(session_id))[0]
    events = await upload_events(settings, session_id, until=ended)
    assert isinstance(events[-1], UploadFailed)
    assert events[-1].error_code == "INTERNAL"
    assert "shutting down" in events[-1].error_message
    assert await open_uploads(settings, key) == []
    assert stored.status == "failed"
