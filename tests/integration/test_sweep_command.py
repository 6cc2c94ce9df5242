"""`ingest sweep` as a command (what the CronJob runs), on the real MinIO and Kafka.

An expired tus upload nobody touches again, and a one-request upload whose
server died (a session claimed by an instance that never beat), are left in
the bucket with parts, a tail and sessions still `uploading`; one run of the
command ends both, removes what they stored, reports their terminal events and
says what it did.
"""

from __future__ import annotations

import asyncio
import base64
import sys
import uuid

import aiohttp
import msgspec

from infra import layout
from ingest.auth import Principal
from ingest.pipeline.hashing import part_checksum
from ingest.settings import IngestSettings
from schemas import UploadFailed
from schemas.api import CreateUploadRequest
from tests.fakes import video_bytes
from tests.integration.cli_processes import ROOT
from tests.integration.harness import bucket_keys, ended, running_ingest, upload_events
from tests.integration.serve_processes import serve_environment
from tests.integration.test_crash_cleanup import open_parts

MiB = 1024 * 1024


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

    command = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli.main",
        "sweep",
        cwd=ROOT,
        env=serve_environment(short, {}),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await command.communicate()
    printed = out.decode()
    assert command.returncode == 0, err.decode()[-2000:]
    assert f"failed: {session.session_id}" in printed
    assert f"expired: {tus_id}" in printed
    assert f"tus_cleaned: {tus_id}" in printed
    assert await open_parts(short) == {}
    assert await bucket_keys(short, layout.TUS_PREFIX) == []
    for upload_id, code in ((session.session_id, "INTERNAL"), (tus_id, "TIMEOUT")):
        events = await upload_events(short, upload_id, until=ended, within=20)
        (failed,) = [e for e in events if isinstance(e, UploadFailed)]
        assert failed.error_code == code
