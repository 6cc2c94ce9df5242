"""tus-js-client with `parallelUploads: 4` against a real ingest server on MinIO and Kafka.

tus-js-client splits the file in four, sends the pieces as partial uploads at once
(`Upload-Concat: partial`) and joins them with a final upload (`Upload-Concat:
final;...`), the concatenation extension. The result must be one object with the
file's SHA-256, and one upload.completed for the user, the final upload's.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ingest.settings import IngestSettings
from tests.integration.harness import (
    RunningIngest,
    completions,
    ended,
    stored_sha256,
    upload_events,
)
from tests.media import MiB, write_fake_video
from tests.tus_js import client_dir, run_upload

SIZE = 20 * MiB
USER = "parallel"


@pytest.fixture(scope="module")
def tus_js() -> Path:
    return client_dir()


async def test_four_parallel_pieces_become_one_upload(
    ingest: RunningIngest, settings: IngestSettings, tus_js: Path, tmp_path: Path
) -> None:
    file = tmp_path / "parallel.mp4"
    sha256 = await asyncio.to_thread(write_fake_video, file, SIZE, seed=63)
    report = await run_upload(
        tus_js, f"{ingest.url}/v1/tus/", ingest.token(USER), file, "--parallel", "4"
    )
    assert report["outcome"] == "success", report
    posts = [r for r in report["requests"] if r["method"] == "POST"]
    assert [r["status"] for r in posts] == [201] * 5, "four partial uploads and the final one"

    session_id = report["url"].rstrip("/").rsplit("/", 1)[-1]
    session, _ = await ingest.services.sessions.load(session_id)
    assert session.status == "completed"
    assert await stored_sha256(settings, session.s3_key) == (sha256, SIZE)
    await upload_events(settings, session_id, until=ended)
    completed = await completions(settings, USER)
    assert [c.upload_id for c in completed] == [session_id]
    assert completed[0].sha256 == sha256
    assert completed[0].size_bytes == SIZE
