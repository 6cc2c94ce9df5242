"""Large uploads streamed through a real ingest server into MinIO, with their events on Kafka."""

from __future__ import annotations

import aiohttp

from ingest.settings import IngestSettings
from schemas import UploadCompleted, UploadProgress, UploadStarted
from tests.integration.harness import (
    RunningIngest,
    ended,
    open_uploads,
    stored_sha256,
    upload_events,
)
from tests.media import MiB, async_chunks, fake_video_chunks, sha256_of

SIZE = 200 * MiB


async def _create_session(
    http: aiohttp.ClientSession, ingest: RunningIngest, user: str, **fields: object
) -> dict[str, object]:
    async with http.post(f"{ingest.url}/v1/uploads", json=fields, headers=ingest.auth(user)) as r:
        assert r.status == 201, await r.text()
        created: dict[str, object] = await r.json()
        return created


async def _check_stored_and_events(
    settings: IngestSettings, result: dict[str, object], session_id: str, expected_sha: str
) -> None:
    assert result["file_hash"] == expected_sha
    assert result["file_size"] == SIZE
    assert result["format"] == "mp4"
    stored_sha, stored_size = await stored_sha256(settings, str(result["s3_key"]))
    assert (stored_sha, stored_size) == (expected_sha, SIZE)
    assert await open_uploads(settings, str(result["s3_key"])) == []

    events = await upload_events(settings, session_id, until=ended)
    assert isinstance(events[0], UploadStarted)
    assert isinstance(events[-1], UploadCompleted)
    progress = [e for e in events if isinstance(e, UploadProgress)]
    assert len(progress) >= SIZE // (8 * MiB) - 1  # at least one per stored part
    sequences = [e.sequence for e in events]
    assert sequences == sorted(set(sequences)), "sequence must strictly increase"
    received = [p.bytes_received for p in progress]
    assert received == sorted(received)
    completed = events[-1]
    assert completed.sha256 == expected_sha
    assert completed.size_bytes == SIZE
    assert completed.video_id == result["video_id"]
    assert completed.analysis_id == result["analysis_id"]
    assert completed.s3_key == result["s3_key"]
    assert completed.s3_bucket == settings.s3_bucket
    assert {e.user_id for e in events} == {"streamer"}


async def test_chunked_put_of_200_mib_is_stored_whole_with_its_events(
    ingest: RunningIngest, settings: IngestSettings
) -> None:
    async with aiohttp.ClientSession() as http:
        session = await _create_session(http, ingest, "streamer", filename="big.mp4")
        session_id = str(session["session_id"])
        body = async_chunks(fake_video_chunks(SIZE, seed=11, chunk=256 * 1024 + 3))
        async with http.put(
            f"{ingest.url}{session['upload_url']}",
            data=body,
            headers={**ingest.auth("streamer"), "Content-Type": "video/mp4"},
        ) as response:
            assert response.status == 201, await response.text()
            result = await response.json()
    await _check_stored_and_events(
        settings, result, session_id, sha256_of(SIZE, seed=11, chunk=256 * 1024 + 3)
    )


async def test_multipart_post_of_200_mib_is_stored_whole_with_its_events(
    ingest: RunningIngest, settings: IngestSettings
) -> None:
    async with aiohttp.ClientSession() as http:
        session = await _create_session(http, ingest, "streamer", filename="form.mp4")
        session_id = str(session["session_id"])
        with aiohttp.MultipartWriter("form-data") as form:
            note = form.append("a note sent before the file")
            note.set_content_disposition("form-data", name="note")
            part = form.append(
                aiohttp.payload.AsyncIterablePayload(
                    async_chunks(fake_video_chunks(SIZE, seed=12, chunk=1_000_003))
                ),
                {"Content-Type": "video/mp4"},
            )
            part.set_content_disposition("form-data", name="file", filename="form.mp4")
            async with http.post(
                f"{ingest.url}{session['upload_url']}", data=form, headers=ingest.auth("streamer")
            ) as response:
                assert response.status == 201, await response.text()
                result = await response.json()
    await _check_stored_and_events(
        settings, result, session_id, sha256_of(SIZE, seed=12, chunk=1_000_003)
    )
