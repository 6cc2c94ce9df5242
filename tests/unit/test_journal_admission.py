"""A full event journal at the HTTP edge: new uploads get 503, readiness says why.

The services run over the in-memory fakes with the journal in front of the
fake bus (`TusRig.journal`); the bus is "down" by `fail_with` (emits) and
`healthy` (its check).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp.test_utils import TestClient

from infra.errors import EventDeliveryError, ServiceUnavailable
from ingest.adapters.journal.sink import JournaledEventSink
from ingest.adapters.journal.store import Journal, JournalLimits
from schemas import UploadStarted
from tests.fakes import FixedQuotaView, video_bytes
from tests.samples import SAMPLES
from tests.unit.test_tus_support import ClientFactory, TusRig, auth, metadata_header


@dataclass
class UnreadQuota(FixedQuotaView):
    """A quota view that has not read its topic: what an instance started with Kafka down has."""

    read: bool = False

    async def check(self) -> None:
        if not self.read:
            raise ServiceUnavailable("the quota view has not caught up with its topic yet")


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[TusRig]:
    rig = TusRig(quota=UnreadQuota(read=True))
    journal = Journal(tmp_path, JournalLimits(max_bytes=64 * 1024, max_age=3600.0))
    rig.journal = JournaledEventSink(rig.sink, journal, retry_seconds=0.05)
    await rig.journal.start()
    yield rig
    await rig.journal.stop(within=0.5)


@pytest.fixture
async def client(rig: TusRig, aiohttp_client: ClientFactory) -> TestClient[Any, Any]:
    return (await rig.instance(aiohttp_client)).client


async def fill(journal: JournaledEventSink) -> None:
    """Journal events of other uploads until new uploads are refused (the bus is down)."""
    sample = SAMPLES["ingest.upload.started"]
    assert isinstance(sample, UploadStarted)
    while journal.backlog().has_room:
        await journal.emit(msgspec.structs.replace(sample, event_id=uuid.uuid4().hex))


async def test_new_uploads_get_503_while_the_journal_is_full_and_sessions_stay_usable(
    rig: TusRig, client: TestClient[Any, Any]
) -> None:
    assert rig.journal is not None
    created = await client.post("/v1/uploads", json={"filename": "a.mp4"}, headers=auth())
    assert created.status == 201
    upload_url = (await created.json())["upload_url"]

    rig.sink.fail_with = EventDeliveryError("the broker is away", retriable=True)
    await fill(rig.journal)

    refused = await client.post("/v1/uploads", json={"filename": "b.mp4"}, headers=auth())
    assert refused.status == 503
    assert (await refused.json())["error_code"] == "EVENT_JOURNAL_FULL"
    assert refused.headers["Retry-After"]
    body = await client.put(
        upload_url, data=video_bytes(4096), headers=auth(**{"Content-Type": "video/mp4"})
    )
    assert body.status == 503
    status = await client.get(upload_url, headers=auth())
    assert (await status.json())["status"] == "active"
    tus = await client.post(
        "/v1/tus/",
        headers=auth(
            **{"Upload-Length": "4096", "Upload-Metadata": metadata_header(filename="c.mp4")}
        ),
    )
    assert tus.status == 503

    # The bus comes back: the journal drains, and the same session takes its body.
    rig.sink.fail_with = None
    await rig.journal.drained()
    body = await client.put(
        upload_url, data=video_bytes(4096), headers=auth(**{"Content-Type": "video/mp4"})
    )
    assert body.status == 201


async def test_readiness_stays_ready_with_the_broker_down_until_the_journal_is_full(
    rig: TusRig, client: TestClient[Any, Any]
) -> None:
    assert rig.journal is not None
    rig.sink.healthy = False
    rig.sink.fail_with = EventDeliveryError("the broker is away", retriable=True)
    await rig.journal.emit(SAMPLES["ingest.upload.completed"])

    ready = await client.get("/readyz")
    body = await ready.json()
    assert ready.status == 200, body
    assert body["checks"]["journal"] == "ok"
    assert "journaled" in body["checks"]["kafka"]
    assert body["journal"]["events"] == 1
    assert body["journal"]["broker_up"] is False

    metrics = await (await client.get("/metrics")).text()
    assert "ingest_journal_events 1.0" in metrics
    assert "ingest_event_bus_up 0.0" in metrics

    await fill(rig.journal)
    full = await client.get("/readyz")
    assert full.status == 503
    assert (await full.json())["checks"]["journal"] == "full"


async def test_a_quota_view_kafka_has_not_fed_keeps_the_instance_ready_only_while_kafka_is_down(
    rig: TusRig, client: TestClient[Any, Any]
) -> None:
    assert isinstance(rig.quota, UnreadQuota)
    rig.quota.read = False
    rig.sink.healthy = False

    down = await client.get("/readyz")
    body = await down.json()
    assert down.status == 200, body
    assert body["checks"]["quota"].startswith("failed; answered from the snapshots read so far")
    created = await client.post("/v1/uploads", json={"filename": "a.mp4"}, headers=auth())
    assert created.status == 201

    # Kafka answers, but the quota view has not read its topic (not provisioned yet, or late).
    rig.sink.healthy = True
    behind = await client.get("/readyz")
    assert behind.status == 503
    assert (await behind.json())["checks"]["quota"] == "failed"

    rig.quota.read = True
    assert (await client.get("/readyz")).status == 200
