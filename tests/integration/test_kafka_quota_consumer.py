"""The quota consumer on a real Kafka broker: after a restart it rebuilds its state from the real
compacted quota topic, skips what its snapshots already reflect and never counts twice.

The records are handed to the app by hand, as the runtime would (its partition
tasks and commits are tested with the runtime); what is real here is the
topics, the partitioning by user id, the producer and the topic readers.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from consumers.quota import QuotaApp, quota_app, snapshot_problems
from infra.feeds import Record, RecordHandler, TopicPartition, TopicReader
from infra.kafka.reader import KafkaTopicReader
from infra.kafka.sink import KafkaEventSink
from ingest.settings import IngestSettings
from schemas import Event, QuotaUpdated, Topics, decode
from tests.quota_support import DEFAULTS, completed, limits_set
from tests.samples import SOURCE


class CountingSink:
    """The Kafka sink's emit, remembering what went through (the topic keeps only the last)."""

    def __init__(self, sink: KafkaEventSink) -> None:
        self.sink = sink
        self.emitted: list[Event] = []

    async def emit(self, event: Event) -> None:
        await self.sink.emit(event)
        self.emitted.append(event)


@pytest.fixture
def topics(settings: IngestSettings) -> Topics:
    return Topics(settings.topic_prefix)


@pytest.fixture
async def sink(settings: IngestSettings, topics: Topics) -> AsyncIterator[KafkaEventSink]:
    async with KafkaEventSink(
        settings.kafka_bootstrap_servers, topics, source=SOURCE, timeout=10
    ) as started:
        yield started


def new_app(settings: IngestSettings, topics: Topics, sink: CountingSink) -> QuotaApp:
    def open_reader(topic: str, handler: RecordHandler) -> TopicReader:
        return KafkaTopicReader(settings.kafka_bootstrap_servers, topic, handler)

    return quota_app(
        topics,
        sink,
        open_reader,
        bytes_limit=DEFAULTS.bytes_limit,
        uploads_limit=DEFAULTS.uploads_limit,
        period_days=DEFAULTS.period_days,
        load_timeout=30.0,
    )


async def read_all(settings: IngestSettings, topic: str) -> list[Record]:
    """Every record the topic holds now, in offset order per partition."""
    records: list[Record] = []
    async with KafkaTopicReader(settings.kafka_bootstrap_servers, topic, records.append) as reader:
        await reader.ready.wait()
    return records


def latest_snapshot(records: list[Record], user_id: str) -> QuotaUpdated:
    snapshots = []
    for record in records:
        event = decode(record.value, record.headers) if record.value is not None else None
        if isinstance(event, QuotaUpdated) and event.user_id == user_id:
            snapshots.append(event)
    return snapshots[-1]


async def deliver(app: QuotaApp, record: Record) -> None:
    assert record.value is not None
    event = decode(record.value, record.headers)
    assert event is not None
    await app.handle(event, record)


async def test_a_restarted_consumer_resumes_from_the_compacted_quota_topic(
    settings: IngestSettings, topics: Topics, sink: KafkaEventSink
) -> None:
    user = f"user-{uuid.uuid4().hex[:8]}"
    for event in (
        completed("u1", 100, user_id=user),
        limits_set(None, 40, user_id=user),
        completed("u2", 20, user_id=user),
        completed("u1", 100, user_id=user),  # the same upload published again
    ):
        await sink.emit(event)
    inputs = await read_all(settings, topics.uploads) + await read_all(
        settings, topics.quota_commands
    )
    [number] = {record.partition for record in inputs}  # one user: one partition number
    # Only the user's partition number: its snapshots must be in the quota partition of that number.
    partitions = frozenset(
        {TopicPartition(topics.uploads, number), TopicPartition(topics.quota_commands, number)}
    )

    first_sink = CountingSink(sink)
    first = new_app(settings, topics, first_sink)
    await first.on_assigned(partitions)
    for record in inputs:
        await deliver(first, record)
    assert len(first_sink.emitted) == 3  # u1, the limits, u2; the repeat of u1 changes nothing

    # A crash before any commit: the restarted consumer gets every record again.
    second_sink = CountingSink(sink)
    second = new_app(settings, topics, second_sink)
    await second.on_assigned(partitions)
    assert second.state_of(user) == first.state_of(user)
    for record in inputs:
        await deliver(second, record)
    assert second_sink.emitted == []

    await sink.emit(completed("u3", 3, user_id=user))
    seen = {(record.topic, record.partition, record.offset) for record in inputs}
    [new_record] = [
        record
        for record in await read_all(settings, topics.uploads)
        if (record.topic, record.partition, record.offset) not in seen
    ]
    await deliver(second, new_record)

    latest = latest_snapshot(await read_all(settings, topics.quota), user)
    assert (latest.bytes_used, latest.uploads_used, latest.uploads_limit) == (123, 3, 40)
    assert sorted(u.upload_id for u in latest.counted_uploads) == ["u1", "u2", "u3"]
    assert snapshot_problems(latest) == []
