"""A real `ingest serve` process over an S3 that fails: a share of part uploads answer 5xx or
stall (tests/integration/s3_faults.py, a proxy in front of the real MinIO).

Every upload either completes with the right SHA-256 (in the answer and in the
stored object) or fails cleanly: 502 `STORAGE_ERROR`, a body that names no
endpoint, bucket or key, an `upload.failed` with `STORAGE_ERROR`, and no
multipart upload left. Uploads whose every part upload fails always fail;
the others meet random faults and mostly survive them by retrying. Where the
abort fails too (S3 refusing every call for that upload), exactly that
upload's multipart upload is left, and one pass of the sweep ends it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from benchmarks.process import Server, ingest_server
from cli.sweep import sweep_once
from infra.s3 import open_s3, warm_session
from ingest.auth import issue_token
from ingest.settings import IngestSettings
from schemas import Topics, UploadCompleted, UploadEvent, UploadFailed
from tests.integration.harness import open_uploads, stored_sha256, topic_events
from tests.integration.s3_faults import Faults, FaultyS3Proxy
from tests.media import MiB, fake_video, sha256_of

ROOT = Path(__file__).resolve().parents[2]
USER = "faulty/user"
SIZE = 12 * MiB  # three parts of 5 MiB
UPLOADS = {
    **{f"clip-{n}.mp4": n for n in range(6)},
    **{f"doomed-{n}.mp4": 10 + n for n in range(2)},  # every part upload fails
    "stuck-0.mp4": 20,  # every part upload and every abort fails
}
FAULTS = Faults(
    share={"UploadPart": 0.4},
    always_fail={
        "doomed-": frozenset({"UploadPart"}),
        "stuck-": frozenset({"UploadPart", "AbortMultipartUpload"}),
    },
    spared_parts=1,
    stall_seconds=1.5,
    seed=7,
)


@pytest.fixture
async def proxy(settings: IngestSettings) -> AsyncIterator[tuple[FaultyS3Proxy, str]]:
    faulty = FaultyS3Proxy(settings.s3_endpoint().endpoint_url or "", FAULTS)
    async with faulty.serving() as url:
        yield faulty, url


@pytest.fixture
async def server(
    settings: IngestSettings, proxy: tuple[FaultyS3Proxy, str]
) -> AsyncIterator[Server]:
    endpoint = settings.s3_endpoint()
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "INGEST_TOPIC_PREFIX": settings.topic_prefix,
        "S3_ENDPOINT_URL": proxy[1],
        "S3_BUCKET": settings.s3_bucket,
        "AWS_ACCESS_KEY_ID": endpoint.access_key_id or "",
        "AWS_SECRET_ACCESS_KEY": endpoint.secret_access_key or "",
        "INGEST_JWT_SECRET": settings.jwt_secret or "",
        "INGEST_PART_SIZE": str(5 * MiB),
        "INGEST_PARTS_IN_FLIGHT": "2",
        "INGEST_INSTANCE_ID": "s3-faults",
        "PYTHONPATH": str(ROOT),
    }
    async with ingest_server(env, source=ROOT) as running:
        yield running


async def _upload(
    http: aiohttp.ClientSession, server: Server, auth: dict[str, str], name: str, seed: int
) -> tuple[str, int, dict[str, Any]]:
    async with http.post(
        f"{server.url}/v1/uploads", json={"filename": name}, headers=auth
    ) as created:
        assert created.status == 201, await created.text()
        session_id: str = (await created.json())["session_id"]
    async with http.put(
        f"{server.url}/v1/uploads/{session_id}", data=fake_video(SIZE, seed=seed), headers=auth
    ) as answer:
        return session_id, answer.status, await answer.json()


async def test_every_upload_completes_intact_or_fails_cleanly_with_nothing_left(
    settings: IngestSettings, proxy: tuple[FaultyS3Proxy, str], server: Server
) -> None:
    faulty, proxy_url = proxy
    secret = settings.jwt_secret
    assert secret is not None
    auth = {"Authorization": f"Bearer {issue_token(secret, USER)}"}
    limit = asyncio.Semaphore(3)

    async def one(name: str, seed: int) -> tuple[str, int, dict[str, Any]]:
        async with limit:
            return await _upload(http, server, auth, name, seed)

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
        outcomes = await asyncio.gather(*(one(name, seed) for name, seed in UPLOADS.items()))

    leaky = [
        settings.s3_bucket,
        "127.0.0.1",
        proxy_url.rsplit(":", 1)[-1],
        (settings.s3_endpoint().endpoint_url or "").rsplit(":", 1)[-1],
        "dashboard-uploads",
        "_ingest",
    ]
    completed: dict[str, str] = {}
    failed: list[str] = []
    for (session_id, status, body), (name, seed) in zip(outcomes, UPLOADS.items(), strict=True):
        if status == 201:
            assert not name.startswith(("doomed-", "stuck-")), body
            assert body["file_hash"] == sha256_of(SIZE, seed=seed)
            assert await stored_sha256(settings, body["s3_key"]) == (body["file_hash"], SIZE)
            completed[session_id] = body["s3_key"]
        else:
            assert status == 502, (status, body)
            assert body["error_code"] == "STORAGE_ERROR", body
            text = str(body)
            assert not [word for word in leaky if word in text], body
            failed.append(session_id)
    assert len(failed) >= 3  # the doomed and the stuck ones at least

    # The terminal event of every upload says the same.
    uploads = Topics(settings.topic_prefix).uploads
    ids = {session_id for session_id, _, _ in outcomes}
    ends = await topic_events(
        settings,
        [uploads],
        UploadEvent,
        keep=lambda e: e.upload_id in ids and isinstance(e, UploadCompleted | UploadFailed),
        until=lambda found: len(found) >= len(ids),
    )
    assert {e.upload_id for e in ends if isinstance(e, UploadCompleted)} == set(completed)
    failures = [e for e in ends if isinstance(e, UploadFailed)]
    assert sorted(e.upload_id for e in failures) == sorted(failed)
    assert {e.error_code for e in failures} == {"STORAGE_ERROR"}

    # No multipart upload is left but the one whose abort S3 refused too, with the part it
    # stored before its next ones failed; one pass of the sweep, S3 answering again, ends it.
    left = await open_uploads_in(settings)
    assert [key.rsplit("/", 1)[-1] for key in left] == ["stuck-0.mp4"], left
    [stuck] = await open_uploads(settings, left[0])
    parts = await parts_of(settings, left[0], stuck["UploadId"])
    assert parts == [5 * MiB]
    print(
        f"\n{len(completed)} completed, {len(failed)} failed cleanly; proxy: {dict(faulty.counts)};"
        f" left: {len(left)} multipart upload (abort refused) holding parts of {parts} bytes"
    )
    report = await sweep_once(settings)
    assert await open_uploads_in(settings) == [], report


async def open_uploads_in(settings: IngestSettings) -> list[str]:
    async with open_s3(await warm_session(), settings.s3_endpoint()) as s3:
        listed = await s3.list_multipart_uploads(Bucket=settings.s3_bucket)
        return sorted(upload["Key"] for upload in listed.get("Uploads", []))


async def parts_of(settings: IngestSettings, key: str, upload_id: str) -> list[int]:
    async with open_s3(await warm_session(), settings.s3_endpoint()) as s3:
        listed = await s3.list_parts(Bucket=settings.s3_bucket, Key=key, UploadId=upload_id)
        return [part["Size"] for part in listed.get("Parts", [])]
