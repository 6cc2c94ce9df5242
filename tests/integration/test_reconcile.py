"""`ingest reconcile` on the real MinIO and Kafka: lost completions come back with their ids.

Uploads (raw PUT, one part and several, and tus) complete on the module's
topics. A second set of topics over the same bucket stands in for a journal
whose disk was lost before it drained: it holds one of the completions and
none of the others. `ingest reconcile`, run as the command line runs it,
sends exactly the missing ones to it, each the very event first emitted (same
`ce_id`, same body); run again, it sends nothing.
"""

from __future__ import annotations

import asyncio
import base64
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import msgspec
import pytest

from infra.kafka.sink import KafkaEventSink
from infra.provisioning import ensure_topics
from ingest.settings import IngestSettings
from schemas import Topics, UploadCompleted
from tests.integration.harness import RunningIngest, running_ingest, topic_events
from tests.integration.serve_processes import serve_environment
from tests.media import MiB, fake_video

ROOT = Path(__file__).resolve().parents[2]
SUMMARY = re.compile(
    r"checked (\d+) completed uploads against (\d+) records: "
    r"(\d+) present, (\d+) re-emitted, (\d+) without a recorded event, "
    r"(\d+) whose object is not as recorded"
)


@pytest.fixture
async def ingest(settings: IngestSettings) -> AsyncIterator[RunningIngest]:
    async with running_ingest(settings) as server:
        yield server


async def _put(http: aiohttp.ClientSession, ingest: RunningIngest, user: str, data: bytes) -> str:
    auth = ingest.auth(user)
    async with http.post(
        f"{ingest.url}/v1/uploads", json={"filename": "clip.mp4"}, headers=auth
    ) as created:
        assert created.status == 201, await created.text()
        session_id: str = (await created.json())["session_id"]
    async with http.put(f"{ingest.url}/v1/uploads/{session_id}", data=data, headers=auth) as put:
        assert put.status == 201, await put.text()
    return session_id


async def _tus(http: aiohttp.ClientSession, ingest: RunningIngest, user: str, data: bytes) -> str:
    name = base64.b64encode(b"resumed.mp4").decode()
    headers = {**ingest.auth(user), "Tus-Resumable": "1.0.0"}
    creation = {"Upload-Length": str(len(data)), "Upload-Metadata": f"filename {name}"}
    async with http.post(f"{ingest.url}/v1/tus/", headers={**headers, **creation}) as created:
        assert created.status == 201, await created.text()
        path = created.headers["Location"]
    patch = {"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}
    async with http.patch(f"{ingest.url}{path}", data=data, headers={**headers, **patch}) as done:
        assert done.status == 204, await done.text()
    return path.rsplit("/", 1)[-1]


async def _reconcile(settings: IngestSettings, *flags: str) -> tuple[list[int], str]:
    """`ingest reconcile` on these settings' bucket and topics: the summary's figures, stdout."""
    # The settings' own endpoint and credentials: a stack started for the tests is not the
    # default one, and the command would otherwise look for credentials elsewhere.
    env = {**serve_environment(settings, {}), "PYTHONPATH": str(ROOT)}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli.main",
        "reconcile",
        *flags,
        cwd=ROOT,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(90):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    found = SUMMARY.search(out.decode())
    assert found is not None, out.decode()
    return [int(figure) for figure in found.groups()], out.decode()


async def _completions(settings: IngestSettings, count: int) -> list[UploadCompleted]:
    """Every completion on the uploads topic, once `count` are there (and a moment more)."""
    uploads = Topics(settings.topic_prefix).uploads
    await topic_events(
        settings, [uploads], UploadCompleted, keep=lambda _: True, until=lambda e: len(e) >= count
    )
    # Read again after the count was reached: one more (a duplicate) would show here.
    await asyncio.sleep(1)
    return await topic_events(
        settings, [uploads], UploadCompleted, keep=lambda _: True, until=lambda e: len(e) >= count
    )


async def test_reconcile_re_emits_exactly_the_missing_completions_with_their_ids(
    ingest: RunningIngest, http: aiohttp.ClientSession, settings: IngestSettings
) -> None:
    ids = [
        await _put(http, ingest, "alice", fake_video(256 * 1024, seed=71)),
        await _put(http, ingest, "alice", fake_video(12 * MiB, seed=72)),
        await _put(http, ingest, "bob/2", fake_video(3 * MiB, seed=73)),
        await _tus(http, ingest, "bob/2", fake_video(2 * MiB, seed=74)),
    ]
    originals = {e.upload_id: e for e in await _completions(settings, len(ids))}
    assert sorted(originals) == sorted(ids)

    # The topics the uploads went to hold every completion: nothing to send.
    figures, _ = await _reconcile(settings)
    assert figures[:1] + figures[2:] == [4, 4, 0, 0, 0], figures

    # Fresh topics over the same bucket: a journal lost before it drained all but one.
    lost = msgspec.structs.replace(settings, topic_prefix=f"{settings.topic_prefix}lost.")
    await ensure_topics(lost.kafka_bootstrap_servers, Topics(lost.topic_prefix))
    kept = originals[ids[1]]
    async with KafkaEventSink(
        lost.kafka_bootstrap_servers, Topics(lost.topic_prefix), source="/test"
    ) as sink:
        await sink.emit(kept)

    figures, out = await _reconcile(lost)
    assert figures == [4, 1, 1, 3, 0, 0], out
    assert sorted(re.findall(r"re-emitted upload.completed of (\w+)", out)) == sorted(
        set(ids) - {kept.upload_id}
    )
    after = await _completions(lost, len(ids))
    assert len(after) == len(ids), [e.upload_id for e in after]
    for event in after:
        # The very event first emitted: same id (the CloudEvents id), same body.
        assert event == originals[event.upload_id]

    figures, out = await _reconcile(lost)
    assert figures == [4, 4, 4, 0, 0, 0], out
    assert len(await _completions(lost, len(ids))) == len(ids)

    # --since: completions older than the time asked for are not compared.
    figures, _ = await _reconcile(lost, "--since", "1h")
    assert (figures[0], figures[3]) == (4, 0), figures
    figures, _ = await _reconcile(lost, "--since", "2999-01-01T00:00:00+00:00")
    assert figures[:2] == [0, 0], figures
