"""One suite, two implementations: each fixture here is the embedded adapter or the real one.

`object_store`, `document_store`, `event_sink_and_reader` and `feeds` are
parametrized: `local` (LocalObjectStore, LocalDocumentStore, InProcessEventBus,
in tmp_path, no services) and the real adapters on the real MinIO and Kafka of
`tests/conftest.py` (marked `integration`; its module-scoped
`settings` gives every test module its own bucket and topic prefix). The real
backends are only reached when a test asks for them, so `-m "not integration"`
runs the local half without any service.

Each fixture hands the port under test plus what a test needs to look behind
it (read a stored object back, publish and read raw records), and nothing the
assertions could tell apart.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from infra.bus import InProcessEventBus, Subscription
from infra.kafka.sink import KafkaEventSink
from infra.s3 import open_s3_client
from ingest.adapters.local_documents import LocalDocumentStore
from ingest.adapters.local_store import LocalObjectStore
from ingest.adapters.s3_documents import S3DocumentStore
from ingest.adapters.s3_store import S3ObjectStore
from ingest.ports import DocumentStore, EventSink, ObjectStore
from ingest.settings import IngestSettings
from schemas import Topics
from tests.contract.feeds import BusBackend, FeedBackend, KafkaBackend

SOURCE = "/ingest/contract-tests"
LOCAL_BUCKET = "contract-bucket"


@pytest.fixture(
    params=[
        pytest.param("local", id="local"),
        pytest.param("real", id="real", marks=pytest.mark.integration),
    ]
)
def real_settings(request: pytest.FixtureRequest) -> IngestSettings | None:
    """The real services' settings, or None for the embedded adapters.

    Synchronous on purpose: `settings` provisions with asyncio.run, which
    cannot run inside the event loop of an async fixture.
    """
    if request.param == "local":
        return None
    found: IngestSettings = request.getfixturevalue("settings")
    return found


# --- object stores ---------------------------------------------------------------------


@dataclass
class ObjectBackend:
    store: ObjectStore
    read: Callable[[str], Awaitable[bytes]]
    """The stored object's bytes, read back behind the port."""


@pytest.fixture
async def object_store(
    real_settings: IngestSettings | None, tmp_path: Path
) -> AsyncIterator[ObjectBackend]:
    if real_settings is None:
        local = LocalObjectStore(tmp_path / "objects", LOCAL_BUCKET)

        async def read_local(key: str) -> bytes:
            return b"".join([chunk async for chunk in local.open_object(key)])

        yield ObjectBackend(local, read_local)
        return
    async with open_s3_client(real_settings.s3_endpoint()) as client:

        async def read_s3(key: str) -> bytes:
            response = await client.get_object(Bucket=real_settings.s3_bucket, Key=key)
            async with response["Body"] as body:
                data: bytes = await body.read()
            return data

        yield ObjectBackend(S3ObjectStore(client, real_settings.s3_bucket), read_s3)


# --- document stores -------------------------------------------------------------------


@pytest.fixture
async def document_store(
    real_settings: IngestSettings | None, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[DocumentStore]:
    if real_settings is None:
        yield LocalDocumentStore(tmp_path / "documents")
        return
    async with open_s3_client(real_settings.s3_endpoint()) as client:
        # A prefix per test: tests of one module share the bucket.
        prefix = f"_contract/{request.node.name}/"
        yield S3DocumentStore(client, real_settings.s3_bucket, prefix=prefix)


# --- event sinks -----------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """A record as a reader of the topic sees it."""

    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


class RecordReader(Protocol):
    topics: Topics

    async def publish_raw(
        self, topic: str, key: bytes, value: bytes, headers: Sequence[tuple[str, bytes]]
    ) -> None:
        """Put a record on the topic the way another producer would, not through the sink."""
        ...

    async def read(self, topic: str, count: int) -> list[Received]:
        """The next `count` records of `topic` produced since the reader started, in order."""
        ...


@dataclass
class BusReader:
    bus: InProcessEventBus
    subscription: Subscription
    topics: Topics
    _held: dict[str, list[Received]] = field(default_factory=dict)

    async def publish_raw(
        self, topic: str, key: bytes, value: bytes, headers: Sequence[tuple[str, bytes]]
    ) -> None:
        self.bus.publish(topic, key=key, value=value, headers=headers)

    async def read(self, topic: str, count: int) -> list[Received]:
        held = self._held.setdefault(topic, [])
        async with asyncio.timeout(5):
            while len(held) < count:
                record = await anext(self.subscription)
                self._held.setdefault(record.topic, []).append(
                    Received(record.topic, record.key, record.value, list(record.headers))
                )
        taken, self._held[topic] = held[:count], held[count:]
        return taken


@dataclass
class KafkaReader:
    """Reads every partition of every topic from where they ended when it started."""

    consumer: Any
    bootstrap_servers: str
    topics: Topics
    producer: Any = None
    _held: dict[str, list[Received]] = field(default_factory=dict)

    async def publish_raw(
        self, topic: str, key: bytes, value: bytes, headers: Sequence[tuple[str, bytes]]
    ) -> None:
        if self.producer is None:
            self.producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap_servers)
            await self.producer.start()
        await self.producer.send_and_wait(topic, key=key, value=value, headers=list(headers))

    async def read(self, topic: str, count: int) -> list[Received]:
        held = self._held.setdefault(topic, [])
        async with asyncio.timeout(20):
            while len(held) < count:
                batches = await self.consumer.getmany(timeout_ms=200)
                for records in batches.values():
                    for record in records:
                        self._held.setdefault(record.topic, []).append(
                            Received(record.topic, record.key, record.value, list(record.headers))
                        )
        taken, self._held[topic] = held[:count], held[count:]
        return taken

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
        await self.consumer.stop()


@pytest.fixture
async def event_sink_and_reader(
    real_settings: IngestSettings | None,
) -> AsyncIterator[tuple[EventSink, RecordReader]]:
    if real_settings is None:
        topics = Topics("contract.")
        async with InProcessEventBus(topics, source=SOURCE) as bus:
            with_subscription = bus.subscribe(*(name for name, _ in topics.specs()))
            async with with_subscription as subscription:
                yield bus, BusReader(bus, subscription, topics)
        return
    topics = Topics(real_settings.topic_prefix)
    reader = KafkaReader(
        await _consumer_at_the_end(real_settings.kafka_bootstrap_servers, topics),
        real_settings.kafka_bootstrap_servers,
        topics,
    )
    try:
        async with KafkaEventSink(
            real_settings.kafka_bootstrap_servers, topics, source=SOURCE, timeout=10
        ) as sink:
            yield sink, reader
    finally:
        await reader.stop()


async def _consumer_at_the_end(bootstrap_servers: str, topics: Topics) -> Any:
    """A consumer of every partition, positioned at the end before anything is emitted."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = [
            TopicPartition(name, number)
            for name, spec in topics.specs()
            for number in range(spec.partitions)
        ]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        # Resolve every position now: a lazy reset after the first emit would skip it.
        for partition in partitions:
            await consumer.position(partition)
    except BaseException:
        await consumer.stop()
        raise
    return consumer


# --- feeds: group consumers and topic readers ------------------------------------------


@pytest.fixture
async def feeds(real_settings: IngestSettings | None) -> AsyncIterator[FeedBackend]:
    """A topic of this test's own: on a fresh in-process bus, or a fresh Kafka topic."""
    if real_settings is None:
        bus_backend = BusBackend()
        try:
            yield bus_backend
        finally:
            await bus_backend.close()
        return
    kafka_backend = KafkaBackend(real_settings.kafka_bootstrap_servers)
    try:
        await kafka_backend.open()
        yield kafka_backend
    finally:
        await kafka_backend.close()
