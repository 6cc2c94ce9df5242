"""KafkaEventSink against a real Kafka broker."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator

import msgspec
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord

from infra.kafka.sink import KafkaEventSink
from infra.provisioning import ensure_topics
from ingest.errors import EventDeliveryError, ServiceUnavailable
from ingest.settings import IngestSettings
from schemas import (
    Topics,
    UploadCompleted,
    UploadProgress,
    decode,
    headers_dict,
    schema_uri,
)
from tests.integration.brokers import wait_until_dead
from tests.samples import SAMPLES, SOURCE


class Emits:
    def __init__(self) -> None:
        self.seen: list[tuple[str, float, bool]] = []

    def __call__(self, ce_type: str, seconds: float, ok: bool) -> None:
        self.seen.append((ce_type, seconds, ok))


@pytest.fixture
def topics(settings: IngestSettings) -> Topics:
    return Topics(settings.topic_prefix)


@pytest.fixture
async def sink(settings: IngestSettings, topics: Topics) -> AsyncIterator[KafkaEventSink]:
    async with KafkaEventSink(
        settings.kafka_bootstrap_servers, topics, source=SOURCE, timeout=10
    ) as started:
        yield started


async def read_records(
    settings: IngestSettings, topic: str, count: int, *, seconds: float = 30
) -> list[ConsumerRecord[bytes, bytes]]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        async with asyncio.timeout(seconds):
            while len(records) < count:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    records.extend(batch)
    finally:
        await consumer.stop()
    return records


# --- the event sink ---------------------------------------------------------------------


async def test_an_emitted_event_is_read_back_with_its_cloudevents_headers(
    settings: IngestSettings, topics: Topics
) -> None:
    emits = Emits()
    event = SAMPLES["ingest.upload.completed"]
    assert isinstance(event, UploadCompleted)
    async with KafkaEventSink(
        settings.kafka_bootstrap_servers, topics, source=SOURCE, observer=emits
    ) as sink:
        await sink.emit(event)

    (record,) = await read_records(settings, topics.uploads, 1)
    assert decode(record.value, record.headers) == event
    assert record.key == event.user_id.encode()
    headers = headers_dict(record.headers)
    assert headers == {
        "ce_specversion": "1.0",
        "ce_id": event.event_id,
        "ce_source": SOURCE,
        "ce_type": "ingest.upload.completed",
        "ce_time": headers["ce_time"],
        "ce_subject": event.upload_id,
        "ce_dataschema": schema_uri("ingest.upload.completed"),
        "content-type": "application/json",
    }
    assert headers["ce_time"].startswith("2024-05-06T07:08:09.123456")
    assert [(ce_type, ok) for ce_type, _, ok in emits.seen] == [("ingest.upload.completed", True)]


async def test_the_events_of_one_upload_stay_in_order_on_one_partition(
    settings: IngestSettings, topics: Topics, sink: KafkaEventSink
) -> None:
    base = SAMPLES["ingest.upload.progress"]
    assert isinstance(base, UploadProgress)
    upload_id = f"ordered-{uuid.uuid4().hex[:8]}"
    events = [
        msgspec.structs.replace(base, upload_id=upload_id, event_id=uuid.uuid4().hex, sequence=n)
        for n in range(30)
    ]
    for event in events:
        await sink.emit(event)

    records = await read_records(settings, topics.progress, len(events))
    ours = [r for r in records if r.key == upload_id.encode()]
    assert len({r.partition for r in ours}) == 1
    decoded = [decode(r.value, r.headers) for r in ours]
    assert [e.sequence for e in decoded if isinstance(e, UploadProgress)] == list(range(30))


async def test_check_answers_while_started_and_refuses_after_stop(
    settings: IngestSettings, topics: Topics
) -> None:
    sink = KafkaEventSink(settings.kafka_bootstrap_servers, topics, source=SOURCE)
    with pytest.raises(ServiceUnavailable):
        await sink.check()
    await sink.start()
    await sink.check()
    await sink.stop()
    with pytest.raises(ServiceUnavailable):
        await sink.check()
    with pytest.raises(EventDeliveryError) as refused:
        await sink.emit(SAMPLES["ingest.upload.started"])
    assert refused.value.may_be_delivered is False


async def test_start_against_a_refusing_address_fails_within_its_timeout() -> None:
    sink = KafkaEventSink("127.0.0.1:1", Topics("x."), source=SOURCE, start_timeout=2)
    started = time.monotonic()
    async with asyncio.timeout(15):
        with pytest.raises(ServiceUnavailable) as refused:
            await sink.start()
    assert time.monotonic() - started < 10
    assert "127.0.0.1:1" in refused.value.message
    assert not sink.started
    with pytest.raises(EventDeliveryError):
        await sink.emit(SAMPLES["ingest.upload.started"])


async def test_start_against_a_silent_broker_fails_within_its_timeout() -> None:
    # Accepts connections and never answers: the case where aiokafka waits longest.
    silent: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        silent.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sink = KafkaEventSink(f"127.0.0.1:{port}", Topics("x."), source=SOURCE, start_timeout=2)
    started = time.monotonic()
    try:
        async with asyncio.timeout(15):
            with pytest.raises(ServiceUnavailable):
                await sink.start()
    finally:
        for writer in silent:
            writer.close()
        server.close()
        await server.wait_closed()
    assert silent, "the sink never connected"
    assert time.monotonic() - started < 10


async def test_emit_that_kafka_cannot_take_fails_within_its_timeout(
    settings: IngestSettings,
) -> None:
    # Topics nobody created (the broker does not create them): the producer waits
    # for metadata that never comes, as it would for a partition without a leader.
    missing = Topics(f"missing-{uuid.uuid4().hex[:8]}.")
    emits = Emits()
    async with KafkaEventSink(
        settings.kafka_bootstrap_servers,
        missing,
        source=SOURCE,
        timeout=1.5,
        request_timeout_ms=60_000,
        observer=emits,
    ) as sink:
        started = time.monotonic()
        async with asyncio.timeout(15):
            with pytest.raises(EventDeliveryError) as failed:
                await sink.emit(SAMPLES["ingest.upload.started"])
        elapsed = time.monotonic() - started
    assert 1.4 < elapsed < 5
    assert failed.value.retriable is True
    assert failed.value.details["topic"] == missing.uploads
    assert [ok for _, _, ok in emits.seen] == [False]


async def test_emit_and_stop_stay_bounded_when_the_broker_dies_after_start(
    doomed_broker: tuple[str, int, str], caplog: pytest.LogCaptureFixture
) -> None:
    # aiokafka #1101: an idempotent producer retries a queued batch for a dead
    # broker forever, and its stop() waits for that batch.
    bootstrap, pid, marker = doomed_broker
    topics = Topics("doomed.")
    await ensure_topics(bootstrap, topics)
    sink = KafkaEventSink(bootstrap, topics, source=SOURCE, timeout=2, check_timeout=2)
    await sink.start()
    # The new topics' leaders may take a moment on a busy machine; a send that gives up
    # leaves the sink usable (it builds a fresh producer), so try until one is taken.
    async with asyncio.timeout(30):
        while True:
            try:
                await sink.emit(SAMPLES["ingest.upload.started"])
                break
            except EventDeliveryError:
                await asyncio.sleep(0.5)

    os.killpg(pid, signal.SIGKILL)
    await asyncio.to_thread(wait_until_dead, pid, marker)

    async with asyncio.timeout(20):
        started = time.monotonic()
        with pytest.raises(EventDeliveryError) as failed:
            await sink.emit(SAMPLES["ingest.upload.completed"])
        assert time.monotonic() - started < 4
        assert failed.value.retriable is True
        assert failed.value.may_be_delivered is True

        with pytest.raises(ServiceUnavailable):
            await sink.check()

        started = time.monotonic()
        await sink.stop()
        assert time.monotonic() - started < 8
    assert not sink.started
    lost = SAMPLES["ingest.upload.completed"].event_id
    assert any(
        "was never delivered" in record.getMessage() and lost in record.getMessage()
        for record in caplog.records
        if record.name == "infra.kafka.sink"
    )


def test_an_unavailable_compression_is_refused_up_front() -> None:
    with pytest.raises(ValueError, match="compression"):
        KafkaEventSink("127.0.0.1:1", Topics(), source=SOURCE, compression_type="brotli")
