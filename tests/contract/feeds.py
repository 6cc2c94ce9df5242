"""A topic of one test's own, on the in-process bus or on the real Kafka, and the ways to read it.

The contract suites of `infra.feeds` (group consumers and topic readers) get one
`FeedBackend` and never ask which one it is: they publish raw records, build
group members and readers, and make records expire, through it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka import TopicPartition as KafkaPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete

from infra.bus import BusTopicReader, InProcessEventBus
from infra.bus.ranges import BusRangeReader
from infra.feeds import (
    GroupConsumer,
    RangeReader,
    RebalanceListener,
    RecordHandler,
    TopicPartition,
    TopicReader,
)
from infra.kafka.group import KafkaGroupConsumer
from infra.kafka.ranges import KafkaRangeReader
from infra.kafka.reader import KafkaTopicReader
from schemas import Topics

KAFKA_PARTITIONS = 3
BUS_RETENTION = 20


class Published(NamedTuple):
    partition: TopicPartition
    offset: int


class FeedBackend(Protocol):
    topic: str

    @property
    def partitions(self) -> frozenset[TopicPartition]:
        """Every partition of the topic."""
        ...

    async def publish(
        self, key: bytes, value: bytes, headers: Sequence[tuple[str, bytes]] = ()
    ) -> Published: ...

    def group_consumer(
        self, group_id: str, listener: RebalanceListener | None = None
    ) -> GroupConsumer: ...

    def topic_reader(self, handler: RecordHandler, since: float | None = None) -> TopicReader: ...

    def range_reader(self) -> RangeReader: ...

    async def expire(self, partition: TopicPartition, before: int) -> None:
        """Make the records of `partition` before offset `before` gone, as retention would."""
        ...


class BusBackend:
    def __init__(self) -> None:
        self.bus = InProcessEventBus(
            Topics("contract."), source="/contract-tests", retention=BUS_RETENTION
        )
        self.topic = self.bus.topics.uploads

    @property
    def partitions(self) -> frozenset[TopicPartition]:
        return frozenset({TopicPartition(self.topic, 0)})

    async def publish(
        self, key: bytes, value: bytes, headers: Sequence[tuple[str, bytes]] = ()
    ) -> Published:
        record = self.bus.publish(self.topic, key=key, value=value, headers=headers)
        return Published(TopicPartition(self.topic, record.partition), record.offset)

    def group_consumer(
        self, group_id: str, listener: RebalanceListener | None = None
    ) -> GroupConsumer:
        return self.bus.group_consumer(group_id, self.topic, listener=listener)

    def topic_reader(self, handler: RecordHandler, since: float | None = None) -> TopicReader:
        return BusTopicReader(self.bus, self.topic, handler, since=since)

    def range_reader(self) -> RangeReader:
        return BusRangeReader(self.bus)

    async def expire(self, partition: TopicPartition, before: int) -> None:
        # The bus forgets only by its bound: push the oldest records out with newer ones.
        while self.bus.start_offset(self.topic) < before:
            self.bus.publish(self.topic, key=b"filler", value=b"filler")

    async def close(self) -> None:
        self.bus.close()


class KafkaBackend:
    """A fresh topic of `KAFKA_PARTITIONS` partitions, deleted at the end."""

    def __init__(self, bootstrap_servers: str) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = f"contract-feeds-{uuid.uuid4().hex[:12]}"
        self._admin: Any = None
        self._producer: Any = None

    @property
    def partitions(self) -> frozenset[TopicPartition]:
        return frozenset(TopicPartition(self.topic, n) for n in range(KAFKA_PARTITIONS))

    async def open(self) -> None:
        self._admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers)
        await self._admin.start()
        await self._admin.create_topics(
            [NewTopic(self.topic, num_partitions=KAFKA_PARTITIONS, replication_factor=1)]
        )
        async with asyncio.timeout(30):
            # The broker has no notification of a topic becoming visible; it is polled.
            while not await self._visible():
                await asyncio.sleep(0.1)
        self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap_servers)
        await self._producer.start()

    async def publish(
        self, key: bytes, value: bytes, headers: Sequence[tuple[str, bytes]] = ()
    ) -> Published:
        metadata = await self._producer.send_and_wait(
            self.topic, key=key, value=value, headers=list(headers)
        )
        return Published(TopicPartition(self.topic, metadata.partition), metadata.offset)

    def group_consumer(
        self, group_id: str, listener: RebalanceListener | None = None
    ) -> GroupConsumer:
        return KafkaGroupConsumer(
            self.bootstrap_servers,
            group_id,
            self.topic,
            listener=listener,
            # The broker's shortest session; quick heartbeats notice rebalances soon.
            session_timeout_ms=6000,
            heartbeat_interval_ms=200,
        )

    def topic_reader(self, handler: RecordHandler, since: float | None = None) -> TopicReader:
        return KafkaTopicReader(
            self.bootstrap_servers, self.topic, handler, ready_timeout=20, since=since
        )

    def range_reader(self) -> RangeReader:
        return KafkaRangeReader(self.bootstrap_servers, consumers=2, timeout=20)

    async def expire(self, partition: TopicPartition, before: int) -> None:
        await self._admin.delete_records(
            {KafkaPartition(partition.topic, partition.partition): RecordsToDelete(before)}
        )

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
        if self._admin is not None:
            try:
                await self._admin.delete_topics([self.topic])
            finally:
                await self._admin.close()

    async def _visible(self) -> bool:
        [description] = await self._admin.describe_topics([self.topic])
        partitions = description.get("partitions", [])
        return (
            description.get("error_code") == 0
            and len(partitions) == KAFKA_PARTITIONS
            and all(p.get("leader", -1) >= 0 for p in partitions)
        )
