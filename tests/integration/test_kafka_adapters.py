"""KafkaEventSink and KafkaQuotaView against a real Kafka broker."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from deploy import stack
from deploy.stack import kafka, process
from deploy.stack.process import free_port
from infra.env import GiB
from infra.kafka.sink import KafkaEventSink
from infra.provisioning import ensure_topics
from ingest.adapters.kafka_quota import KafkaQuotaView
from ingest.errors import EventDeliveryError, ServiceUnavailable
from ingest.settings import IngestSettings
from schemas import (
    QuotaUpdated,
    Topics,
    UploadCompleted,
    UploadProgress,
    decode,
    encode,
    headers_dict,
    schema_uri,
)
from schemas.periods import current_period, rfc3339
from tests.samples import SAMPLES, SOURCE

QUOTA_BYTES = 10 * GiB
QUOTA_UPLOADS = 100


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


def snapshot(user_id: str, **fields: object) -> QuotaUpdated:
    now = datetime.now(UTC)
    values: dict[str, object] = {
        "user_id": user_id,
        "period_start": now - timedelta(days=1),
        "period_end": now + timedelta(days=29),
        "bytes_used": 3 * GiB,
        "bytes_limit": 20 * GiB,
        "uploads_used": 7,
        "uploads_limit": 50,
        "updated_at": now,
    }
    values.update(fields)
    return QuotaUpdated(**values)  # type: ignore[arg-type]


async def produce_raw(
    settings: IngestSettings,
    topic: str,
    records: Iterable[tuple[bytes, bytes | None, list[tuple[str, bytes]]]],
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        for key, value, headers in records:
            await producer.send_and_wait(topic, key=key, value=value, headers=headers)
    finally:
        await producer.stop()


async def eventually(condition: Callable[[], bool], *, seconds: float = 15) -> None:
    """Polls: the view has no change notification to wait on, and needs none."""
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.1)


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


@pytest.fixture
def doomed_broker(tmp_path: Path) -> Iterator[tuple[str, int, str]]:
    """A private single-node broker that a test may kill: (bootstrap, pid, marker)."""
    if shutil.which("java") is None:
        pytest.skip("a private broker needs Java")
    try:
        libs = kafka.ensure_jars(stack.default_cache_dir())
    except stack.StackError as error:
        pytest.skip(f"no Kafka jars for a private broker: {error}")
    port = free_port()
    pid, log = kafka.start(libs=libs, state_dir=tmp_path, port=port, controller_port=free_port())
    try:
        kafka.wait_ready(pid=pid, marker=str(tmp_path), port=port, log=log)
        yield f"127.0.0.1:{port}", pid, str(tmp_path)
    finally:
        process.stop(pid, str(tmp_path), grace=5)


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
    await sink.emit(SAMPLES["ingest.upload.started"])

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


def wait_until_dead(pid: int, marker: str) -> None:
    deadline = time.monotonic() + 10
    while process.is_running(pid, marker):
        assert time.monotonic() < deadline, "the broker did not die"
        time.sleep(0.05)


def test_an_unavailable_compression_is_refused_up_front() -> None:
    with pytest.raises(ValueError, match="compression"):
        KafkaEventSink("127.0.0.1:1", Topics(), source=SOURCE, compression_type="brotli")


# --- the quota view ---------------------------------------------------------------------


@pytest.fixture
def quota_view(settings: IngestSettings, topics: Topics) -> KafkaQuotaView:
    return KafkaQuotaView(
        settings.kafka_bootstrap_servers,
        topics,
        quota_bytes=QUOTA_BYTES,
        quota_uploads=QUOTA_UPLOADS,
        period_days=30,
        ready_timeout=20,
    )


async def test_quota_view_serves_snapshots_published_before_and_after_it_started(
    settings: IngestSettings, topics: Topics, sink: KafkaEventSink, quota_view: KafkaQuotaView
) -> None:
    early = snapshot("quota-early", bytes_used=1 * GiB)
    await sink.emit(snapshot("quota-early", bytes_used=0))
    await sink.emit(early)

    async with quota_view:
        assert quota_view.ready.is_set()
        await quota_view.check()
        status = quota_view.status("quota-early")
        assert status.bytes_used == 1 * GiB
        assert status.bytes_limit == 20 * GiB
        assert (status.uploads_used, status.uploads_limit) == (7, 50)
        assert status.period_start == rfc3339(early.period_start)
        assert status.period_end == rfc3339(early.period_end)

        late = snapshot("quota-late", bytes_used=5 * GiB, uploads_used=9)
        await sink.emit(late)
        await eventually(lambda: quota_view.status("quota-late").bytes_used == 5 * GiB)
        assert quota_view.status("quota-late").uploads_used == 9
        assert quota_view.healthy


async def test_quota_view_gives_the_defaults_to_a_user_it_has_not_seen(
    quota_view: KafkaQuotaView,
) -> None:
    async with quota_view:
        status = quota_view.status(f"unknown-{uuid.uuid4().hex}")
    start, end = current_period(datetime.now(UTC), 30)
    assert (status.bytes_limit, status.bytes_used) == (QUOTA_BYTES, 0)
    assert (status.uploads_limit, status.uploads_used) == (QUOTA_UPLOADS, 0)
    assert (status.period_start, status.period_end) == (rfc3339(start), rfc3339(end))
    assert status.bytes_remaining == QUOTA_BYTES


async def test_quota_view_skips_records_it_cannot_use_and_stays_healthy(
    settings: IngestSettings, topics: Topics, sink: KafkaEventSink, quota_view: KafkaQuotaView
) -> None:
    future_type = encode(snapshot("quota-skip"), source=SOURCE)
    future_headers = [
        (name, b"ingest.quota.from_the_future" if name == "ce_type" else value)
        for name, value in future_type.headers
    ]
    await produce_raw(
        settings,
        topics.quota,
        [
            (b"quota-skip", b"not json", [("ce_type", b"ingest.quota.updated")]),
            (b"quota-skip", future_type.value, future_headers),
            (b"quota-gone", None, []),
        ],
    )
    await sink.emit(snapshot("quota-skip", uploads_used=3))
    await sink.emit(snapshot("quota-gone", uploads_used=4))
    await produce_raw(settings, topics.quota, [(b"quota-gone", None, [])])

    async with quota_view:
        assert quota_view.status("quota-skip").uploads_used == 3
        # The tombstone after its snapshot removed the user: back to the defaults.
        assert quota_view.status("quota-gone").uploads_limit == QUOTA_UPLOADS
        assert quota_view.healthy
        await quota_view.check()


async def test_a_snapshot_of_an_ended_period_keeps_its_limits_but_not_its_usage(
    topics: Topics, sink: KafkaEventSink, quota_view: KafkaQuotaView
) -> None:
    long_ago = datetime.now(UTC) - timedelta(days=90)
    await sink.emit(
        snapshot(
            "quota-old",
            period_start=long_ago,
            period_end=long_ago + timedelta(days=30),
            bytes_used=19 * GiB,
            uploads_used=49,
        )
    )
    async with quota_view:
        status = quota_view.status("quota-old")
    assert (status.bytes_limit, status.bytes_used) == (20 * GiB, 0)
    assert (status.uploads_limit, status.uploads_used) == (50, 0)
    assert status.period_end == rfc3339(current_period(datetime.now(UTC), 30)[1])


async def test_quota_view_of_a_missing_topic_is_unavailable(settings: IngestSettings) -> None:
    view = KafkaQuotaView(
        settings.kafka_bootstrap_servers,
        Topics(f"missing-{uuid.uuid4().hex[:8]}."),
        quota_bytes=1,
        quota_uploads=1,
        period_days=30,
        start_timeout=2,
    )
    started = time.monotonic()
    async with asyncio.timeout(20):
        with pytest.raises(ServiceUnavailable) as unavailable:
            await view.start()
    assert time.monotonic() - started < 10
    assert "does not exist" in unavailable.value.message
    assert not view.healthy
    with pytest.raises(ServiceUnavailable):
        await view.check()


async def test_quota_view_reads_only_committed_snapshots_and_still_catches_up(
    settings: IngestSettings, topics: Topics, quota_view: KafkaQuotaView
) -> None:
    # The quota ledger may publish in transactions: the partition then ends with
    # a commit or abort marker, past which the view must still count as caught up.
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        transactional_id=f"quota-view-test-{uuid.uuid4().hex[:8]}",
    )
    await producer.start()
    try:
        for used, commit in [(2, True), (99, False)]:
            record = encode(snapshot("quota-txn", uploads_used=used), source=SOURCE)
            await producer.begin_transaction()
            await producer.send_and_wait(
                topics.quota, key=record.key, value=record.value, headers=record.headers
            )
            if commit:
                await producer.commit_transaction()
            else:
                await producer.abort_transaction()
    finally:
        await producer.stop()

    async with asyncio.timeout(30), quota_view:
        assert quota_view.ready.is_set()
        assert quota_view.status("quota-txn").uploads_used == 2
