"""RangeReader: reading given offset ranges once behaves alike on the in-process bus and on Kafka.

Each test has a topic of its own. A read hands over exactly the records of
each range, in offset order, partition after partition in the order given,
and refuses a range that starts before what the topic still keeps.
"""

from __future__ import annotations

from collections import defaultdict

import pytest

from infra.errors import RecordsExpired
from infra.feeds import OffsetRange, Record, TopicPartition
from tests.contract.feeds import FeedBackend, Published


async def publish_many(feeds: FeedBackend, count: int) -> list[Published]:
    return [await feeds.publish(b"key-%d" % n, b"value-%d" % n) for n in range(count)]


def by_partition(published: list[Published]) -> dict[TopicPartition, list[int]]:
    offsets: defaultdict[TopicPartition, list[int]] = defaultdict(list)
    for where in published:
        offsets[where.partition].append(where.offset)
    return dict(offsets)


async def test_exactly_the_ranges_in_order(feeds: FeedBackend) -> None:
    offsets = by_partition(await publish_many(feeds, 12))
    ranges = {
        tp: OffsetRange(found[1], found[-1] + 1)
        if len(found) > 2
        else OffsetRange(found[0], found[0] + 1)
        for tp, found in sorted(offsets.items(), reverse=True)
    }
    handed: list[tuple[TopicPartition, int]] = []

    def keep(record: Record) -> None:
        handed.append((TopicPartition(record.topic, record.partition), record.offset))

    reader = feeds.range_reader()
    try:
        await reader.read(ranges, keep)
        expected = [
            (tp, offset)
            for tp, wanted in ranges.items()
            for offset in offsets[tp]
            if wanted.start <= offset < wanted.end
        ]
        assert handed == expected
        # An empty range reads nothing; a second read works the same.
        handed.clear()
        await reader.read({tp: OffsetRange(r.end, r.end) for tp, r in ranges.items()}, keep)
        assert handed == []
        await reader.read(ranges, keep)
        assert handed == expected
    finally:
        await reader.close()


async def test_a_range_older_than_retention_is_refused_and_nothing_handed(
    feeds: FeedBackend,
) -> None:
    published = await publish_many(feeds, 3)
    first = published[0]
    await feeds.expire(first.partition, first.offset + 1)
    handed: list[Record] = []
    reader = feeds.range_reader()
    try:
        with pytest.raises(RecordsExpired):
            await reader.read(
                {first.partition: OffsetRange(first.offset, first.offset + 1)}, handed.append
            )
        assert handed == []
    finally:
        await reader.close()
