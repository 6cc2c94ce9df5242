"""`ingest serve` SIGKILLed mid-upload, with real processes, MinIO and Kafka: nothing is left.

A killed server cannot abort its multipart uploads, end its sessions or emit
their terminal events. Another instance's sweep (every `INGEST_SWEEP_INTERVAL`)
must, once the dead one's heartbeat is older than `INGEST_INSTANCE_DEAD_AFTER`:
no multipart upload left in the bucket, every session ended, every upload's
terminal event on the uploads topic. A DELETE taken while the dead instance
still looked alive is settled the same way (`upload.cancelled`). A tus client
whose server was killed resumes through another instance, which takes the
upload over within seconds, and never sees a status tus does not define.

The figures (time from the kill until clean, time to take over) are printed;
the bounds asserted are the contract (TTL plus one interval, past the dead
threshold), not speed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from infra.s3 import open_s3, warm_session
from ingest.settings import IngestSettings
from schemas import UploadCancelled, UploadCompleted, UploadFailed
from tests.fakes import MP4_HEAD
from tests.integration.harness import ended, stored_sha256, upload_events
from tests.integration.serve_processes import ServeProcess, serve_process

MiB = 1024 * 1024
TTL = 6.0
SWEEP_INTERVAL = 2.0
DEAD_AFTER = 3.0
FAST = {
    "INGEST_SESSION_TTL": f"{TTL:g}s",
    "INGEST_SWEEP_INTERVAL": f"{SWEEP_INTERVAL:g}s",
    "INGEST_HEARTBEAT_INTERVAL": "0.5s",
    "INGEST_INSTANCE_DEAD_AFTER": f"{DEAD_AFTER:g}s",
    "INGEST_PART_SIZE": "5MiB",
    "INGEST_CANCEL_POLL": "0.2s",
}
TUS_STATUSES = {200, 201, 204, 400, 403, 404, 409, 410, 412, 413, 415, 460}
"""What tus 1.0.0 answers with (and 5xx, which a client retries)."""


def file_bytes(size: int, seed: int) -> bytes:
    block = hashlib.sha256(str(seed).encode()).digest() * (MiB // 32)
    return (MP4_HEAD + block * (size // len(block) + 1))[:size]


async def stalling_body(data: bytes, send: int, started: asyncio.Event) -> AsyncIterator[bytes]:
    """The first `send` bytes of `data`, then nothing: a client still connected, mid-file."""
    for at in range(0, send, MiB):
        yield data[at : min(at + MiB, send)]
    started.set()
    await asyncio.Event().wait()


async def open_parts(settings: IngestSettings) -> dict[str, int]:
    """Every multipart upload still open in the bucket: key -> parts it holds."""
    async with open_s3(await warm_session(), settings.s3_endpoint()) as s3:
        listed = await s3.list_multipart_uploads(Bucket=settings.s3_bucket)
        held = {}
        for upload in listed.get("Uploads", []):
            try:
                parts = await s3.list_parts(
                    Bucket=settings.s3_bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                )
            except s3.exceptions.NoSuchUpload:
                continue  # aborted by the sweep between the listing and this call
            held[upload["Key"]] = len(parts.get("Parts", []))
        return held


async def until(condition: Any, *, within: float, what: str) -> float:
    """Poll `condition()` (async) until true; the seconds it took."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(within):
            while not await condition():
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(f"{what}: not within {within:g} s") from None
    return time.monotonic() - started


async def status_of(http: aiohttp.ClientSession, server: ServeProcess, session_id: str) -> str:
    async with http.get(
        f"{server.url}/v1/uploads/{session_id}", headers=server.auth("crash")
    ) as answer:
        assert answer.status == 200, await answer.text()
        body = await answer.json()
        status: str = body["status"]
        return status


async def test_uploads_of_a_killed_server_are_ended_and_leave_nothing(
    settings: IngestSettings,
) -> None:
    size = 40 * MiB
    async with (
        serve_process(settings, FAST) as doomed,
        serve_process(settings, FAST) as survivor,
        aiohttp.ClientSession() as http,
    ):
        session_ids = []
        for _ in range(3):
            async with http.post(
                f"{doomed.url}/v1/uploads",
                json={"filename": "clip.mp4", "expected_file_size": size},
                headers=doomed.auth("crash"),
            ) as created:
                assert created.status == 201, await created.text()
                session_ids.append((await created.json())["session_id"])
        streams = []
        for seed, session_id in enumerate(session_ids):
            started = asyncio.Event()
            body = stalling_body(file_bytes(size, seed), 16 * MiB, started)
            streams.append(
                asyncio.create_task(
                    http.put(
                        f"{doomed.url}/v1/uploads/{session_id}",
                        data=body,
                        headers={**doomed.auth("crash"), "Content-Type": "video/mp4"},
                    )
                )
            )

        async def parts_stored() -> bool:
            held = await open_parts(settings)
            return len(held) == 3 and all(parts >= 2 for parts in held.values())

        await until(parts_stored, within=30, what="parts stored by the doomed server")
        await doomed.kill()
        killed_at = time.monotonic()
        for stream in streams:
            stream.cancel()
            with contextlib.suppress(BaseException):
                await stream
        held_when_killed = await open_parts(settings)

        # The user cancels one while its server still looks alive (its heartbeat is fresh).
        async with http.delete(
            f"{survivor.url}/v1/uploads/{session_ids[2]}", headers=survivor.auth("crash")
        ) as deleted:
            assert deleted.status == 204

        async def clean() -> bool:
            if await open_parts(settings):
                return False
            statuses = [await status_of(http, survivor, s) for s in session_ids]
            return all(status in ("failed", "cancelled") for status in statuses)

        # The instance is judged dead DEAD_AFTER after its last beat; the next pass (at most
        # one interval later) cleans; the 10 s on top are for two busy cores.
        await until(clean, within=DEAD_AFTER + SWEEP_INTERVAL + 10, what="clean after the kill")
        cleaned_after = time.monotonic() - killed_at

        endings = []
        for session_id in session_ids:
            events = await upload_events(settings, session_id, until=ended, within=20)
            endings.append([e for e in events if isinstance(e, UploadFailed | UploadCancelled)])
    print(
        f"\nkilled holding {sum(held_when_killed.values())} parts in {len(held_when_killed)} "
        f"uploads; nothing left {cleaned_after:.1f} s after SIGKILL "
        f"(dead after {DEAD_AFTER:g} s, sweep every {SWEEP_INTERVAL:g} s, TTL {TTL:g} s)"
    )
    for ending in endings[:2]:
        (failed,) = ending
        assert isinstance(failed, UploadFailed)
        assert failed.error_code == "INTERNAL"
        assert failed.bytes_received >= 10 * MiB
    (cancelled,) = endings[2]
    assert isinstance(cancelled, UploadCancelled)


async def test_a_tus_upload_resumes_through_another_instance_after_its_server_is_killed(
    settings: IngestSettings,
) -> None:
    env = {**FAST, "INGEST_SESSION_TTL": "120s"}
    data = file_bytes(12 * MiB, seed=7)
    tus = {"Tus-Resumable": "1.0.0"}
    async with (
        serve_process(settings, env) as doomed,
        serve_process(settings, env) as survivor,
        aiohttp.ClientSession() as http,
    ):
        name = base64.b64encode(b"clip.mp4").decode()
        async with http.post(
            f"{doomed.url}/v1/tus/",
            headers={
                **doomed.auth("crash"),
                **tus,
                "Upload-Length": str(len(data)),
                "Upload-Metadata": f"filename {name}",
            },
        ) as created:
            assert created.status == 201, await created.text()
            location = created.headers["Location"]
        started = asyncio.Event()
        patching = asyncio.create_task(
            http.patch(
                f"{doomed.url}{location}",
                data=stalling_body(data, 7 * MiB, started),
                headers={
                    **doomed.auth("crash"),
                    **tus,
                    "Upload-Offset": "0",
                    "Content-Type": "application/offset+octet-stream",
                },
            )
        )

        async def part_stored() -> bool:
            return any(parts >= 1 for parts in (await open_parts(settings)).values())

        await until(part_stored, within=30, what="a part stored by the doomed server")
        await doomed.kill()
        killed_at = time.monotonic()
        patching.cancel()
        with contextlib.suppress(BaseException):
            await patching

        # What a tus client does: ask for the offset, send the rest; on 409 ask again.
        statuses: list[int] = []
        offset = None
        async with asyncio.timeout(40):
            while offset != len(data):
                async with http.head(
                    f"{survivor.url}{location}", headers={**survivor.auth("crash"), **tus}
                ) as head:
                    statuses.append(head.status)
                    assert head.status == 200, await head.text()
                    offset = int(head.headers["Upload-Offset"])
                async with http.patch(
                    f"{survivor.url}{location}",
                    data=data[offset:],
                    headers={
                        **survivor.auth("crash"),
                        **tus,
                        "Upload-Offset": str(offset),
                        "Content-Type": "application/offset+octet-stream",
                    },
                ) as patched:
                    statuses.append(patched.status)
                    if patched.status == 204:
                        offset = int(patched.headers["Upload-Offset"])
        resumed_after = time.monotonic() - killed_at
        upload_id = location.rsplit("/", 1)[-1]
        events = await upload_events(settings, upload_id, until=ended, within=20)
        (completed,) = [e for e in events if isinstance(e, UploadCompleted)]
        leftovers = await open_parts(settings)
    print(
        f"\ntus upload resumed through another instance {resumed_after:.1f} s after SIGKILL "
        f"(answers {statuses})"
    )
    assert 423 not in statuses
    assert set(statuses) <= TUS_STATUSES
    # Taken over from the silent writer, not after its 30 s lease lapsed.
    assert resumed_after < 15
    assert completed.sha256 == hashlib.sha256(data).hexdigest()
    assert await stored_sha256(settings, completed.s3_key) == (completed.sha256, len(data))
    assert leftovers == {}
