"""Given offset ranges of the in-process bus's topics, read once: an `infra.feeds.RangeReader`.

The in-process twin of `infra.kafka.ranges.KafkaRangeReader`, reading the
topics' retained logs directly (a topic here is one partition).

How it fails: RecordsExpired (nothing handed over) when a range starts
before what its topic still keeps; ServiceUnavailable once the bus is
closed (or the reader); ValueError for a topic the bus does not have or a partition other
than 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from infra.bus.eventbus import InProcessEventBus
from infra.errors import RecordsExpired, ServiceUnavailable
from infra.feeds import OffsetRange, RangeReader, RecordHandler, TopicPartition, hand_over

_BATCH: Final = 1000


class BusRangeReader:
    def __init__(self, bus: InProcessEventBus) -> None:
        self._bus = bus
        self._closed = False

    async def read(
        self, ranges: Mapping[TopicPartition, OffsetRange], handler: RecordHandler
    ) -> None:
        if self._bus.closed or self._closed:
            raise ServiceUnavailable("the event bus is closed", retriable=False)
        wanted = {tp: r for tp, r in ranges.items() if r.end > r.start}
        for tp in wanted:
            if tp.partition != 0:
                raise ValueError(f"{tp.topic} has one partition on the bus, not {tp.partition + 1}")
        expired = sorted(
            f"{tp.topic}[0]"
            for tp, r in wanted.items()
            if r.start < self._bus.start_offset(tp.topic)
        )
        if expired:
            raise RecordsExpired(
                f"records to replay are gone from {', '.join(expired)}",
                details={"partitions": expired},
            )
        for tp, wanted_range in wanted.items():
            self._read_one(tp.topic, wanted_range, handler)

    def _read_one(self, topic: str, wanted: OffsetRange, handler: RecordHandler) -> None:
        offset = wanted.start
        while offset < wanted.end:
            records = self._bus.read(topic, offset, _BATCH)
            if not records:
                return
            for record in records:
                if record.offset >= wanted.end:
                    return
                hand_over(handler, record)
                offset = record.offset + 1

    async def close(self) -> None:
        self._closed = True


if TYPE_CHECKING:

    def _implements(reader: BusRangeReader) -> RangeReader:
        return reader
