"""`ingest serve` started with Kafka down: it serves, journals, and sends it all once Kafka is up.

A real `ingest serve` process is pointed at a private broker that is not
running yet (its port refuses connections). The server must become ready
(saying that Kafka is down and the journal has room) and answer an upload
201; then the broker starts, empty, and the topics are created a moment
later (provisioning after the broker, as a compose file may do it): every
lifecycle event of the upload must reach `ingest.uploads` in `sequence`
order, and the quota view must catch up. The figures (process start to the
first 201, broker start to the events on the topic) are printed.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import aiohttp
import msgspec
import pytest

from benchmarks.private_broker import PrivateBroker
from infra.provisioning import ensure_topics
from ingest.settings import IngestSettings
from schemas import Topics, UploadCompleted, UploadEvent, UploadStarted
from tests.fakes import MP4_HEAD
from tests.integration.harness import topic_events
from tests.integration.serve_processes import serve_process

pytestmark = pytest.mark.timeout(180)

SIZE = 2 * 1024 * 1024


@pytest.fixture(autouse=True)
def needs_java() -> None:
    if shutil.which("java") is None:
        pytest.skip("a private broker needs Java")


async def readiness(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, object]]:
    async with http.get(f"{url}/readyz") as answer:
        body: dict[str, object] = await answer.json()
        return answer.status, body


async def test_serve_starts_with_kafka_down_and_sends_the_events_once_it_is_up(
    settings: IngestSettings, tmp_path: Path
) -> None:
    broker = await asyncio.to_thread(PrivateBroker, tmp_path / "kafka")
    private = msgspec.structs.replace(settings, kafka_bootstrap_servers=broker.bootstrap)
    data = (MP4_HEAD + bytes(range(256)) * (SIZE // 256))[:SIZE]
    launched = time.monotonic()
    try:
        async with serve_process(private, {}) as server, aiohttp.ClientSession() as http:
            auth = server.auth("kafka-late")
            async with http.post(
                f"{server.url}/v1/uploads",
                json={"filename": "clip.mp4", "expected_file_size": SIZE},
                headers=auth,
            ) as created:
                assert created.status == 201, await created.text()
                session_id = (await created.json())["session_id"]
            async with http.put(
                f"{server.url}/v1/uploads/{session_id}",
                data=data,
                headers={**auth, "Content-Type": "video/mp4"},
            ) as uploaded:
                assert uploaded.status == 201, await uploaded.text()
            first_201 = time.monotonic() - launched

            status, ready = await readiness(http, server.url)
            assert status == 200, ready
            checks = ready["checks"]
            assert isinstance(checks, dict)
            assert checks["kafka"].endswith("events are journaled until it is back"), ready
            assert checks["quota"].startswith("failed; answered from the snapshots"), ready
            journal = ready["journal"]
            assert isinstance(journal, dict)
            assert (journal["events"], journal["broker_up"]) == (2, False), ready

            await asyncio.to_thread(broker.start)
            broker_up = time.monotonic()
            # Provisioned a moment after the broker: the server meets a broker without topics.
            await asyncio.sleep(2.0)
            await ensure_topics(broker.bootstrap, Topics(settings.topic_prefix))
            provisioned = time.monotonic()
            events = await topic_events(
                private,
                [Topics(settings.topic_prefix).uploads],
                UploadEvent,
                keep=lambda event: event.upload_id == session_id,
                until=lambda found: any(isinstance(e, UploadCompleted) for e in found),
                within=60,
            )
            on_topic = time.monotonic()

            async def caught_up() -> bool:
                status, ready = await readiness(http, server.url)
                return status == 200 and ready["checks"] == {
                    "s3": "ok",
                    "kafka": "ok",
                    "quota": "ok",
                    "journal": "ok",
                }

            async with asyncio.timeout(30):
                while not await caught_up():
                    await asyncio.sleep(0.2)
    finally:
        await asyncio.to_thread(broker.stop)
    print(
        f"\nKafka down at start: first upload answered 201 {first_201:.1f} s after the process "
        f"was launched; its events on the topic {on_topic - broker_up:.1f} s after the broker "
        f"was up, {on_topic - provisioned:.1f} s after its topics were created (2 s later)"
    )
    # A record may be sent twice (consumers de-duplicate by id); none may be missing.
    events = list({event.event_id: event for event in events}.values())
    assert [type(event) for event in events] == [UploadStarted, UploadCompleted]
    assert [event.sequence for event in events] == sorted(event.sequence for event in events)
    completed = events[-1]
    assert isinstance(completed, UploadCompleted)
    assert completed.size_bytes == SIZE
