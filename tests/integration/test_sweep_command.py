"""`ingest sweep` as a command (what the CronJob runs), on the real MinIO and Kafka.

An expired tus upload nobody touches again, and a one-request upload whose
server died (a session claimed by an instance that never beat), are left in
the bucket with parts, a tail and sessions still `uploading`; one run of the
command ends both, removes what they stored, reports their terminal events and
says what it did. Files such a server stored whole but never recorded are
completed by one run (`upload.completed` with the SHA-256 read back from S3),
or deleted and failed when they are not the file the session declared; a
DELETE of such an upload deletes the file.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import sys
import uuid

import aiohttp
import msgspec

from infra import layout
from ingest.auth import Principal
from ingest.http.services import IngestServices
from ingest.model import UploadSession
from ingest.pipeline.hashing import part_checksum
from ingest.settings import IngestSettings
from schemas import UploadCancelled, UploadCompleted, UploadFailed
from schemas.api import CreateUploadRequest
from tests.fakes import video_bytes
from tests.integration.cli_processes import ROOT
from tests.integration.harness import (
    bucket_keys,
    ended,
    object_exists,
    running_ingest,
    stored_sha256,
    upload_events,
)
from tests.integration.serve_processes import serve_environment
from tests.integration.test_crash_cleanup import open_parts

MiB = 1024 * 1024


async def sweep_command(
    settings: IngestSettings, extra: dict[str, str] | None = None, *args: str
) -> str:
    """What one run of `ingest sweep ARGS` prints; it must succeed."""
    command = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli.main",
        "sweep",
        *args,
        cwd=ROOT,
        env=serve_environment(settings, extra or {}),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await command.communicate()
    assert command.returncode == 0, err.decode()[-2000:]
    return out.decode()


async def test_one_run_ends_what_was_left_and_says_so(settings: IngestSettings) -> None:
    short = msgspec.structs.replace(
        settings,
        session_ttl_seconds=2.0,
        sweep_interval_seconds=0.0,  # no sweep in the server: the command does it
        part_size=5 * MiB,
    )
    async with running_ingest(short) as server, aiohttp.ClientSession() as http:
        name = base64.b64encode(b"clip.mp4").decode()
        tus = {"Tus-Resumable": "1.0.0", **server.auth("swept")}
        async with http.post(
            f"{server.url}/v1/tus/",
            headers={**tus, "Upload-Length": str(12 * MiB), "Upload-Metadata": f"filename {name}"},
        ) as created:
            assert created.status == 201, await created.text()
            tus_id = created.headers["Location"].rsplit("/", 1)[-1]
        async with http.patch(
            f"{server.url}/v1/tus/{tus_id}",
            data=video_bytes(6 * MiB),
            headers={
                **tus,
                "Upload-Offset": "0",
                "Content-Type": "application/offset+octet-stream",
            },
        ) as patched:
            assert patched.status == 204, await patched.text()

        # A one-request upload claimed by a server that was killed before it ever beat.
        services = server.services
        session = await services.sessions.create(
            Principal("swept", frozenset()),
            CreateUploadRequest(filename="clip.mp4"),
            protocol="stream",
            file_format="mp4",
        )
        await services.sessions.claim(
            session.session_id, Principal("swept", frozenset()), instance_id=f"gone-{uuid.uuid4()}"
        )
        multipart = await services.store.start_multipart(
            session.s3_key, content_type="video/mp4", metadata={}
        )
        part = video_bytes(5 * MiB, seed=3)
        await multipart.upload_part(1, part, part_checksum(part))
        assert len(await open_parts(short)) == 2
        assert await bucket_keys(short, f"{layout.TUS_PREFIX}{tus_id}/"), "its tail is kept"
        await asyncio.sleep(short.session_ttl_seconds + 0.5)

    printed = await sweep_command(short)
    assert f"failed: {session.session_id}" in printed
    assert f"expired: {tus_id}" in printed
    assert f"tus_cleaned: {tus_id}" in printed
    assert await open_parts(short) == {}
    assert await bucket_keys(short, layout.TUS_PREFIX) == []
    for upload_id, code in ((session.session_id, "INTERNAL"), (tus_id, "TIMEOUT")):
        events = await upload_events(short, upload_id, until=ended, within=20)
        (failed,) = [e for e in events if isinstance(e, UploadFailed)]
        assert failed.error_code == code


async def stored_whole_by_gone_server(
    services: IngestServices, owner: Principal, data: bytes, declared: int
) -> UploadSession:
    """A session claimed by a server killed after completing its multipart upload of `data`,
    before recording it."""
    session = await services.sessions.create(
        owner,
        CreateUploadRequest(filename="clip.mp4", expected_file_size=declared),
        protocol="stream",
        file_format="mp4",
    )
    await services.sessions.claim(session.session_id, owner, instance_id=f"gone-{uuid.uuid4()}")
    multipart = await services.store.start_multipart(
        session.s3_key, content_type="video/mp4", metadata={}
    )
    parts = []
    for number, at in enumerate(range(0, len(data), 5 * MiB), start=1):
        piece = data[at : at + 5 * MiB]
        parts.append(await multipart.upload_part(number, piece, part_checksum(piece)))
    await multipart.complete(parts)
    return session


async def test_a_delete_removes_a_file_a_dead_server_stored_whole_but_never_recorded(
    settings: IngestSettings,
) -> None:
    swept = msgspec.structs.replace(settings, part_size=5 * MiB)
    owner = Principal("stored-then-deleted", frozenset())
    data = video_bytes(6 * MiB, seed=5)
    async with running_ingest(swept) as server, aiohttp.ClientSession() as http:
        session = await stored_whole_by_gone_server(server.services, owner, data, len(data))
        assert await object_exists(swept, session.s3_key)
        async with http.delete(
            f"{server.url}/v1/uploads/{session.session_id}", headers=server.auth(owner.user_id)
        ) as answer:
            assert answer.status == 204, await answer.text()
    assert not await object_exists(swept, session.s3_key)
    events = await upload_events(swept, session.session_id, until=ended, within=20)
    (cancelled,) = [e for e in events if isinstance(e, UploadCancelled)]
    assert cancelled.bytes_received == len(data)


async def test_one_run_completes_files_a_dead_server_stored_whole_but_never_recorded(
    settings: IngestSettings,
) -> None:
    swept = msgspec.structs.replace(settings, sweep_interval_seconds=0.0, part_size=5 * MiB)
    owner = Principal("stored-unrecorded", frozenset())
    data = video_bytes(11 * MiB, seed=4)
    async with running_ingest(swept) as server:
        # The second declared a size its file does not have: not the file it said it would send.
        sessions = [
            await stored_whole_by_gone_server(server.services, owner, data, declared)
            for declared in (len(data), len(data) + 1)
        ]

    # Of one deployment: the part size the dead server had (the parts are counted by it).
    printed = await sweep_command(swept, {"INGEST_PART_SIZE": "5MiB"})
    kept, refused = sessions
    assert f"completed: {kept.session_id}" in printed, printed
    assert f"refused: {refused.session_id}" in printed, printed
    assert await stored_sha256(swept, kept.s3_key) == (hashlib.sha256(data).hexdigest(), len(data))
    assert not await object_exists(swept, refused.s3_key)

    events = await upload_events(swept, kept.session_id, until=ended, within=20)
    (completed,) = [e for e in events if isinstance(e, UploadCompleted)]
    assert completed.sha256 == hashlib.sha256(data).hexdigest()
    assert (completed.size_bytes, completed.parts, completed.duplicate_of) == (len(data), 3, None)
    assert completed.s3_key == kept.s3_key
    events = await upload_events(swept, refused.session_id, until=ended, within=20)
    (failed,) = [e for e in events if isinstance(e, UploadFailed)]
    assert failed.error_code == "STORAGE_ERROR"
    assert "bytes declared" in failed.error_message

    # Once; and a rebuilt index enters the failed one again (its leftovers looked at), not
    # the completed one.
    again = await sweep_command(swept, None, "--rebuild-index")
    assert "0 stored by a gone server completed" in again, again
    assert "sessions entered in the open index" in again, again
