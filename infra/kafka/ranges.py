"""Given offset ranges of Kafka partitions, read once: an `infra.feeds.RangeReader`.

For replays (a WebSocket client that reconnects with a cursor). Each `read`
borrows one of a few started consumers without a group (a replay must not
wait for a consumer to connect, and a thousand clients reconnecting at once
must not open a thousand connections), assigns it the ranges' partitions,
checks the ranges against the partitions' oldest kept offsets, seeks, and
hands over records until every range is read. Only committed records are
read (`read_committed`), like the topic reader.

How it fails: RecordsExpired (nothing handed over) when a range starts
before its partition's oldest kept record; ServiceUnavailable when Kafka
cannot be reached, or a range is not read within `timeout`. At most
`consumers` reads run at once; the others wait their turn. `close` stops the
consumers and never hangs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from aiokafka import AIOKafkaConsumer
from aiokafka import TopicPartition as KafkaPartition
from aiokafka.errors import KafkaError

from infra.errors import RecordsExpired, ServiceUnavailable
from infra.feeds import OffsetRange, RangeReader, RecordHandler, TopicPartition, hand_over
from infra.kafka import internals

log = logging.getLogger(__name__)

_STOP_SECONDS: Final = 10.0


class KafkaRangeReader:
    """`infra.feeds.RangeReader` over a small pool of group-less consumers."""

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        consumers: int = 4,
        timeout: float = 30.0,
        client_id: str | None = None,
    ) -> None:
        if consumers < 1:
            raise ValueError("a range reader needs at least one consumer")
        self._bootstrap_servers = bootstrap_servers
        self._timeout = timeout
        self._client_id = client_id
        self._slots = asyncio.Semaphore(consumers)
        self._idle: list[Any] = []
        self._all: list[Any] = []
        self._closed = False

    async def read(
        self, ranges: Mapping[TopicPartition, OffsetRange], handler: RecordHandler
    ) -> None:
        wanted = {tp: r for tp, r in ranges.items() if r.end > r.start}
        if not wanted:
            return
        async with self._slots:
            consumer = await self._borrow()
            healthy = False
            try:
                async with asyncio.timeout(self._timeout):
                    await self._read_with(consumer, wanted, handler)
                healthy = True
            except TimeoutError:
                raise ServiceUnavailable(
                    f"replaying {len(wanted)} partitions took over {self._timeout:g} s",
                    details={"partitions": len(wanted)},
                ) from None
            except KafkaError as error:
                raise ServiceUnavailable(f"replaying from Kafka failed: {error}") from error
            except RecordsExpired:
                healthy = True
                raise
            finally:
                if healthy and not self._closed:
                    self._idle.append(consumer)
                else:
                    await self._discard(consumer)

    async def close(self) -> None:
        self._closed = True
        consumers, self._all, self._idle = self._all, [], []
        for consumer in consumers:
            await internals.stop_consumer(consumer, _STOP_SECONDS)

    async def _read_with(
        self, consumer: Any, ranges: Mapping[TopicPartition, OffsetRange], handler: RecordHandler
    ) -> None:
        partitions = [KafkaPartition(tp.topic, tp.partition) for tp in ranges]
        consumer.assign(partitions)
        oldest = await consumer.beginning_offsets(partitions)
        expired = sorted(
            f"{tp.topic}[{tp.partition}]"
            for tp in partitions
            if ranges[TopicPartition(tp.topic, tp.partition)].start < oldest[tp]
        )
        if expired:
            raise RecordsExpired(
                f"records to replay are gone from {', '.join(expired)}",
                details={"partitions": expired},
            )
        # One partition after another, in the order given: the caller relies on it.
        for tp in partitions:
            wanted = ranges[TopicPartition(tp.topic, tp.partition)]
            consumer.pause(*[other for other in partitions if other != tp])
            consumer.resume(tp)
            consumer.seek(tp, wanted.start)
            while await consumer.position(tp) < wanted.end:
                batch = await consumer.getmany(tp, timeout_ms=1000, max_records=1000)
                for record in batch.get(tp, ()):
                    if record.offset >= wanted.end:
                        break
                    hand_over(handler, record)

    async def _borrow(self) -> Any:
        if self._closed:
            raise ServiceUnavailable("the range reader is closed", retriable=False)
        if self._idle:
            return self._idle.pop()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap_servers,
            client_id=self._client_id,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="none",
            isolation_level="read_committed",
            fetch_max_wait_ms=100,
        )
        try:
            await consumer.start()
        except (KafkaError, OSError) as error:
            await internals.stop_consumer(consumer, _STOP_SECONDS)
            raise ServiceUnavailable(f"cannot reach Kafka to replay: {error}") from error
        self._all.append(consumer)
        return consumer

    async def _discard(self, consumer: Any) -> None:
        if consumer in self._all:
            self._all.remove(consumer)
        await internals.stop_consumer(consumer, _STOP_SECONDS)


if TYPE_CHECKING:

    def _implements(reader: KafkaRangeReader) -> RangeReader:
        return reader
