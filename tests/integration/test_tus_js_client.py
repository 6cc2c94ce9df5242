"""tus-js-client (the tus project's JavaScript client, in Node.js) against a real ingest server
on MinIO and Kafka: a client nobody here wrote, with its default configuration.

A whole file in one go; and an upload sent in 1 MiB PATCHes (on loopback a single
PATCH is gone before tus-js-client's throttled onProgress fires twice) aborted at about
40 % (abort() from onProgress), then resumed by a new Node.js process that finds it again
in tus-js-client's FileUrlStorage (findPreviousUploads + resumeFromPreviousUpload) and
sends only the rest.
Each ends as one object with the file's SHA-256 and exactly one upload.completed.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import aiohttp
import pytest

from ingest.settings import IngestSettings
from tests.integration.harness import (
    RunningIngest,
    completions,
    ended,
    stored_sha256,
    upload_events,
)
from tests.integration.tus_requests import head_offset
from tests.media import MiB, write_fake_video
from tests.tus_js import client_dir, run_upload

SIZE = 20 * MiB


@pytest.fixture(scope="module")
def tus_js() -> Path:
    return client_dir()


async def _video(path: Path, seed: int) -> str:
    return await asyncio.to_thread(write_fake_video, path, SIZE, seed=seed)


async def check_stored_once(
    ingest: RunningIngest, settings: IngestSettings, url: str, sha256: str
) -> None:
    """The upload at `url` is one object holding the file, completed exactly once."""
    session_id = url.rstrip("/").rsplit("/", 1)[-1]
    session, _ = await ingest.services.sessions.load(session_id)
    assert session.status == "completed"
    assert await stored_sha256(settings, session.s3_key) == (sha256, SIZE)
    await upload_events(settings, session_id, until=ended)
    completed = await completions(settings, session.user_id)
    assert [c.upload_id for c in completed] == [session_id]
    assert completed[0].sha256 == sha256
    assert completed[0].size_bytes == SIZE
    assert completed[0].protocol == "tus"


def _methods(report: dict[str, Any]) -> list[str]:
    return [r["method"] for r in report["requests"]]


async def test_a_default_upload_stores_the_file_once(
    ingest: RunningIngest, settings: IngestSettings, tus_js: Path, tmp_path: Path
) -> None:
    file = tmp_path / "whole.mp4"
    sha256 = await _video(file, seed=61)
    report = await run_upload(tus_js, f"{ingest.url}/v1/tus/", ingest.token("tusjs"), file)
    assert report["outcome"] == "success", report
    assert _methods(report) == ["POST", "PATCH"]
    assert report["requests"][-1] == {
        "method": "PATCH",
        "from": "0",
        "status": 204,
        "offset": str(SIZE),
    }
    await check_stored_once(ingest, settings, report["url"], sha256)


async def test_an_aborted_upload_is_resumed_by_a_new_process(
    ingest: RunningIngest,
    settings: IngestSettings,
    http: aiohttp.ClientSession,
    tus_js: Path,
    tmp_path: Path,
) -> None:
    file = tmp_path / "resumed.mp4"
    sha256 = await _video(file, seed=62)
    endpoint, token = f"{ingest.url}/v1/tus/", ingest.token("resumer")
    options = ("--url-storage", str(tmp_path / "tus-urls.json"), "--chunk-size", str(MiB))

    first = await run_upload(tus_js, endpoint, token, file, *options, "--abort-at", "0.4")
    assert first["outcome"] == "aborted", first
    assert 0.4 * SIZE <= first["progress"] < SIZE
    url = first["url"]
    # The server keeps what arrived once it notices the cut connection.
    kept, deadline = 0, time.monotonic() + 15
    while kept == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        kept = await head_offset(http, ingest, "resumer", urlparse(url).path)
    assert 0 < kept < SIZE

    second = await run_upload(tus_js, endpoint, token, file, *options, "--resume")
    assert second["outcome"] == "success", second
    assert second["previousUploads"] == 1
    assert second["resumedFrom"] == url
    assert second["url"] == url
    # No new upload: the new process asks where to go on, then sends only the rest.
    assert "POST" not in _methods(second)
    head, *patches = second["requests"]
    assert head == {"method": "HEAD", "from": None, "status": 200, "offset": str(kept)}
    assert [(p["method"], p["status"]) for p in patches] == [("PATCH", 204)] * len(patches)
    assert [int(p["from"]) for p in patches] == list(range(kept, SIZE, MiB))
    assert patches[-1]["offset"] == str(SIZE)
    await check_stored_once(ingest, settings, url, sha256)
