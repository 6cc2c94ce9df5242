"""One suite, three implementations: each fixture here is a test fake, an embedded adapter
or the real one.

`object_store`, `document_store`, `event_sink_and_reader` and `quota_view` are
parametrized by `backend`: `fake` (the hand-written fakes of `tests/fakes/` that the unit
tests use, so they cannot drift from what they stand for), `local`
(LocalObjectStore, LocalDocumentStore, InProcessEventBus, in tmp_path, no
services) and `real`, the real adapters on the real MinIO and Kafka of
`tests/conftest.py` (marked `integration`; its module-scoped `settings` gives
every test module its own bucket and topic prefix). The real backends are only
reached when a test asks for them, so `-m "not integration"` runs the fake and
local thirds without any service. `feeds` (group consumers and topic readers,
which have no fake) runs on the in-process bus and on Kafka.

Every event sink also runs behind the event journal (`journaled`), which
must not change anything a reader of the topics sees.

Each fixture hands the port under test plus what a test needs to look behind
it (read a stored object back, publish and read raw records), and nothing the
assertions could tell apart.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal, Protocol

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from infra.bus import BusTopicReader, InProcessEventBus, Subscription
from infra.checksums import crc32c_b64, sha256_b64
from infra.feeds import TopicReader
from infra.kafka.reader import KafkaTopicReader
from infra.kafka.sink import KafkaEventSink
from infra.s3 import open_s3_client
from ingest.adapters.journal.sink import JournaledEventSink
from ingest.adapters.journal.store import Journal, JournalLimits
from ingest.adapters.local_documents import LocalDocumentStore
from ingest.adapters.local_store import LocalObjectStore
from ingest.adapters.s3_documents import S3DocumentStore
from ingest.adapters.s3_store import S3ObjectStore
from ingest.ports import DocumentStore, EventSink, ObjectStore, QuotaView
from ingest.settings import IngestSettings
from ingest.usecases.quota import QuotaSnapshots, SnapshotQuotaView
from schemas import QuotaUpdated, Topics, encode, event_type, topic_for
from tests.contract.feeds import BusBackend, FeedBackend, KafkaBackend
from tests.fakes import (
    S3_MIN_PART_SIZE,
    FixedQuotaView,
    MemoryDocumentStore,
    MemoryObjectStore,
    RecordingEventSink,
)

SOURCE = "/ingest/contract-tests"
LOCAL_BUCKET = "contract-bucket"


@dataclass(frozen=True)
class Backend:
    kind: Literal["fake", "local", "real"]
    settings: IngestSettings | None = None
    """The real services' settings; None but for `real`."""


@pytest.fixture(
    params=[
        pytest.param("fake", id="fake"),
        pytest.param("local", id="local"),
        pytest.param("real", id="real", marks=pytest.mark.integration),
    ]
)
def backend(request: pytest.FixtureRequest) -> Backend:
    """Which implementation the port fixtures hand out.

    Synchronous on purpose: `settings` provisions with asyncio.run, which
    cannot run inside the event loop of an async fixture.
    """
    if request.param == "real":
        return Backend("real", request.getfixturevalue("settings"))
    kind: Literal["fake", "local"] = request.param
    return Backend(kind)


# --- object stores ---------------------------------------------------------------------


@dataclass
class ObjectBackend:
    store: ObjectStore
    read: Callable[[str], Awaitable[bytes]]
    """The stored object's bytes, read back behind the port."""
    open_earlier: Callable[[str, Sequence[bytes]], Awaitable[str]]
    """A multipart upload of the key opened as earlier versions opened them (SHA-256 part
    checksums), holding the parts given (numbered from 1): its upload id. S3's is made
    with the client itself, as those versions made it."""


async def _open_earlier(
    store: LocalObjectStore | MemoryObjectStore, key: str, parts: Sequence[bytes]
) -> str:
    """What the embedded store and the fake offer for it: an upload of SHA-256 parts."""
    upload = await store.start_multipart(
        key, content_type=None, metadata={}, part_checksum="SHA256"
    )
    for number, data in enumerate(parts, start=1):
        await upload.upload_part(number, data, crc32c_b64(data))
    return upload.upload_id


@pytest.fixture
async def object_store(backend: Backend, tmp_path: Path) -> AsyncIterator[ObjectBackend]:
    if backend.kind == "fake":
        # S3's minimum part size, as the local store and S3 enforce it.
        fake = MemoryObjectStore(LOCAL_BUCKET, min_part_size=S3_MIN_PART_SIZE)

        async def read_fake(key: str) -> bytes:
            return fake.objects[key]

        yield ObjectBackend(fake, read_fake, partial(_open_earlier, fake))
        return
    real_settings = backend.settings
    if real_settings is None:
        local = LocalObjectStore(tmp_path / "objects", LOCAL_BUCKET)

        async def read_local(key: str) -> bytes:
            return b"".join([chunk async for chunk in local.open_object(key)])

        yield ObjectBackend(local, read_local, partial(_open_earlier, local))
        return
    async with open_s3_client(real_settings.s3_endpoint()) as client:

        async def read_s3(key: str) -> bytes:
            response = await client.get_object(Bucket=real_settings.s3_bucket, Key=key)
            async with response["Body"] as body:
                data: bytes = await body.read()
            return data

        async def open_earlier_s3(key: str, parts: Sequence[bytes]) -> str:
            bucket = real_settings.s3_bucket
            created = await client.create_multipart_upload(
                Bucket=bucket, Key=key, ChecksumAlgorithm="SHA256"
            )
            upload_id: str = created["UploadId"]
            for number, data in enumerate(parts, start=1):
                await client.upload_part(
                    Bucket=bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=data,
                    ChecksumAlgorithm="SHA256",
                    ChecksumSHA256=sha256_b64(data),
                )
            return upload_id

        yield ObjectBackend(
            S3ObjectStore(client, real_settings.s3_bucket), read_s3, open_earlier_s3
        )


# --- document stores -------------------------------------------------------------------


@pytest.fixture
async def document_store(
    backend: Backend, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[DocumentStore]:
    if backend.kind == "fake":
        yield MemoryDocumentStore()
        return
    real_settings = backend.settings
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
    @property
    def topics(self) -> Topics: ...

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
class RecordingReader:
    """Reads what a RecordingEventSink accepted as the records a bus would carry.

    The fake keeps events, not records: each is encoded and routed here as the
    sinks do it, in the order the fake accepted it, interleaved with records
    published raw in the order the two happened.
    """

    sink: RecordingEventSink
    topics: Topics
    _taken: int = 0
    _held: dict[str, list[Received]] = field(default_factory=dict)

    async def publish_raw(
        self, topic: str, key: bytes, value: bytes, headers: Sequence[tuple[str, bytes]]
    ) -> None:
        self._take_accepted()
        self._held.setdefault(topic, []).append(Received(topic, key, value, list(headers)))

    async def read(self, topic: str, count: int) -> list[Received]:
        self._take_accepted()
        held = self._held.setdefault(topic, [])
        assert len(held) >= count, f"{topic} holds {len(held)} records, not {count}"
        taken, self._held[topic] = held[:count], held[count:]
        return taken

    def _take_accepted(self) -> None:
        for event in self.sink.events[self._taken :]:
            record = encode(event, source=SOURCE)
            topic = topic_for(event_type(event), self.topics)
            self._held.setdefault(topic, []).append(
                Received(topic, record.key, record.value, list(record.headers))
            )
        self._taken = len(self.sink.events)


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


@dataclass
class DrainingReader:
    """Reads behind a journaled sink: what the journal holds is sent before anything is read."""

    inner: RecordReader
    sink: JournaledEventSink

    @property
    def topics(self) -> Topics:
        return self.inner.topics

    async def publish_raw(
        self, topic: str, key: bytes, value: bytes, headers: Sequence[tuple[str, bytes]]
    ) -> None:
        await self.inner.publish_raw(topic, key, value, headers)

    async def read(self, topic: str, count: int) -> list[Received]:
        async with asyncio.timeout(10):
            await self.sink.drained()
        return await self.inner.read(topic, count)


@pytest.fixture(
    params=[pytest.param(False, id="direct"), pytest.param(True, id="journaled")],
)
async def event_sink_and_reader(
    request: pytest.FixtureRequest, backend: Backend, tmp_path: Path
) -> AsyncIterator[tuple[EventSink, RecordReader]]:
    """Each backend as it is, and behind the event journal (which must not change a thing)."""
    async with _sink_and_reader(backend) as (sink, reader):
        if not request.param:
            yield sink, reader
            return
        journal = Journal(tmp_path / "journal", JournalLimits(max_bytes=1 << 20, max_age=60.0))
        async with JournaledEventSink(sink, journal, retry_seconds=0.1) as journaled:
            yield journaled, DrainingReader(reader, journaled)


@asynccontextmanager
async def _sink_and_reader(backend: Backend) -> AsyncIterator[tuple[EventSink, RecordReader]]:
    if backend.kind == "fake":
        recording = RecordingEventSink()
        yield recording, RecordingReader(recording, Topics("contract."))
        return
    real_settings = backend.settings
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


# --- quota views -----------------------------------------------------------------------

QUOTA_BYTES = 10 * 1024**3
QUOTA_UPLOADS = 100
PERIOD_DAYS = 30


@dataclass
class QuotaBackend:
    view: QuotaView
    publish: Callable[[QuotaUpdated], Awaitable[None]]
    """Put a snapshot where the view reads them: the quota topic (for the fake, `set`)."""


@pytest.fixture
async def quota_view(backend: Backend) -> AsyncIterator[QuotaBackend]:
    """A started view whose defaults are QUOTA_BYTES, QUOTA_UPLOADS and PERIOD_DAYS."""
    if backend.kind == "fake":
        fake = FixedQuotaView(QUOTA_BYTES, QUOTA_UPLOADS, PERIOD_DAYS)

        async def set_usage(snapshot: QuotaUpdated) -> None:
            # The fake keeps no periods: it answers every user for the current one.
            fake.set(
                snapshot.user_id,
                bytes_used=snapshot.bytes_used,
                uploads_used=snapshot.uploads_used,
                bytes_limit=snapshot.bytes_limit,
                uploads_limit=snapshot.uploads_limit,
                counted=[upload.upload_id for upload in snapshot.counted_uploads],
            )

        yield QuotaBackend(fake, set_usage)
        return
    real_settings = backend.settings
    if real_settings is None:
        bus = InProcessEventBus(Topics("contract."), source=SOURCE)
        snapshots = QuotaSnapshots()
        async with bus, BusTopicReader(bus, bus.topics.quota, snapshots.apply) as bus_feed:
            yield QuotaBackend(composed_view(snapshots, bus_feed), bus.emit)
        return
    topics = Topics(real_settings.topic_prefix)
    servers = real_settings.kafka_bootstrap_servers
    sink = KafkaEventSink(servers, topics, source=SOURCE, timeout=10)
    snapshots = QuotaSnapshots()
    kafka_feed = KafkaTopicReader(servers, topics.quota, snapshots.apply, ready_timeout=20)
    async with sink, kafka_feed:
        yield QuotaBackend(composed_view(snapshots, kafka_feed), sink.emit)


def composed_view(snapshots: QuotaSnapshots, feed: TopicReader) -> SnapshotQuotaView:
    """The view as the composition roots build it, with the suite's defaults."""
    return SnapshotQuotaView(
        snapshots,
        feed,
        quota_bytes=QUOTA_BYTES,
        quota_uploads=QUOTA_UPLOADS,
        period_days=PERIOD_DAYS,
    )


# --- feeds: group consumers and topic readers ------------------------------------------


@pytest.fixture(
    params=[
        pytest.param("local", id="local"),
        pytest.param("real", id="real", marks=pytest.mark.integration),
    ]
)
def feed_settings(request: pytest.FixtureRequest) -> IngestSettings | None:
    """The real services' settings, or None for the in-process bus (no fake exists)."""
    if request.param == "local":
        return None
    found: IngestSettings = request.getfixturevalue("settings")
    return found


@pytest.fixture
async def feeds(feed_settings: IngestSettings | None) -> AsyncIterator[FeedBackend]:
    """A topic of this test's own: on a fresh in-process bus, or a fresh Kafka topic."""
    if feed_settings is None:
        bus_backend = BusBackend()
        try:
            yield bus_backend
        finally:
            await bus_backend.close()
        return
    kafka_backend = KafkaBackend(feed_settings.kafka_bootstrap_servers)
    try:
        await kafka_backend.open()
        yield kafka_backend
    finally:
        await kafka_backend.close()
