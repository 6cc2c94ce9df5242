"""The quota view of `ingest serve` against a real Kafka broker: a KafkaTopicReader of the quota
topic handing records to the snapshots the view answers from.

What every topic reader does is in tests/contract/test_topic_reader.py.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType

import pytest
from aiokafka import AIOKafkaProducer

from infra.env import GiB
from infra.kafka.reader import KafkaTopicReader
from infra.kafka.sink import KafkaEventSink
from ingest.errors import ServiceUnavailable
from ingest.ports import QuotaStatus
from ingest.settings import IngestSettings
from ingest.usecases.quota import QuotaSnapshots, SnapshotQuotaView
from schemas import QuotaUpdated, Topics, encode
from schemas.periods import current_period, rfc3339
from tests.samples import SOURCE

QUOTA_BYTES = 10 * GiB
QUOTA_UPLOADS = 100


@dataclass
class KafkaQuotaView:
    """The view as `ingest serve` composes it: started and stopped through its reader."""

    reader: KafkaTopicReader
    view: SnapshotQuotaView

    @property
    def ready(self) -> asyncio.Event:
        return self.reader.ready

    @property
    def healthy(self) -> bool:
        return self.reader.healthy

    async def start(self) -> None:
        await self.reader.start()

    async def check(self) -> None:
        await self.view.check()

    def status(self, user_id: str) -> QuotaStatus:
        return self.view.status(user_id)

    async def __aenter__(self) -> KafkaQuotaView:
        await self.reader.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.reader.stop()


def composed_view(
    bootstrap_servers: str, topic: str, *, start_timeout: float = 30.0, ready_timeout: float = 30.0
) -> KafkaQuotaView:
    snapshots = QuotaSnapshots()
    reader = KafkaTopicReader(
        bootstrap_servers,
        topic,
        snapshots.apply,
        start_timeout=start_timeout,
        ready_timeout=ready_timeout,
    )
    view = SnapshotQuotaView(
        snapshots,
        reader,
        quota_bytes=QUOTA_BYTES,
        quota_uploads=QUOTA_UPLOADS,
        period_days=30,
    )
    return KafkaQuotaView(reader, view)


@pytest.fixture
def topics(settings: IngestSettings) -> Topics:
    return Topics(settings.topic_prefix)


@pytest.fixture
async def sink(settings: IngestSettings, topics: Topics) -> AsyncIterator[KafkaEventSink]:
    async with KafkaEventSink(
        settings.kafka_bootstrap_servers, topics, source=SOURCE, timeout=10
    ) as started:
        yield started


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


@pytest.fixture
def quota_view(settings: IngestSettings, topics: Topics) -> KafkaQuotaView:
    return composed_view(settings.kafka_bootstrap_servers, topics.quota, ready_timeout=20)


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
    view = composed_view(
        settings.kafka_bootstrap_servers,
        Topics(f"missing-{uuid.uuid4().hex[:8]}.").quota,
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
