"""Loading the latest quota snapshots of some partitions from the compacted quota topic.

A quota consumer that is assigned input partitions rebuilds the state of
their users from what it (or another instance) published before. The quota
topic is keyed by user id like the inputs and has as many partitions, so a
user's snapshots live in the partition with the number of that user's input
partition. A topic reader (`infra.feeds.TopicReader`, Kafka's or the bus's)
reads the topic from the beginning up to its end at that moment; the last
snapshot of each user by offset is the one compaction would keep.

How it fails: `load_snapshots` raises ServiceUnavailable (retriable) when the
reader cannot start or has not read up to the end `within` its time limit: working
from a partial state would charge uploads a second time, so the caller must
not go on without it. Records that are not valid events are logged and
skipped (the reader's `hand_over` logs a handler that raises); a tombstone
forgets its user.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection

from infra.errors import ServiceUnavailable
from infra.feeds import Record, RecordHandler, TopicReader, where
from schemas import InvalidEvent, QuotaUpdated, decode

log = logging.getLogger(__name__)

ReaderFactory = Callable[[str, RecordHandler], TopicReader]
"""Builds an unstarted reader of a whole topic (`KafkaTopicReader`, `BusTopicReader`)."""

SnapshotsByPartition = dict[int, dict[str, QuotaUpdated]]
"""Partition number -> user id -> that user's latest snapshot."""


async def load_snapshots(
    open_reader: ReaderFactory,
    topic: str,
    partition_numbers: Collection[int],
    *,
    within: float,
) -> SnapshotsByPartition:
    """The latest snapshot of every user in `partition_numbers` of `topic`, read to its end now."""
    wanted = frozenset(partition_numbers)
    found: SnapshotsByPartition = {number: {} for number in wanted}

    def keep(record: Record) -> None:
        if record.partition not in wanted:
            return
        latest = found[record.partition]
        if record.value is None:
            if record.key is not None:
                latest.pop(record.key.decode("utf-8", errors="replace"), None)
            return
        try:
            event = decode(record.value, record.headers)
        except InvalidEvent as error:
            log.warning("skipping an invalid quota snapshot at %s: %s", where(record), error)
            return
        if isinstance(event, QuotaUpdated):
            latest[event.user_id] = event

    reader = open_reader(topic, keep)
    try:
        async with asyncio.timeout(within):
            await reader.start()
            await reader.ready.wait()
    except TimeoutError:
        raise ServiceUnavailable(
            f"could not read the quota snapshots of {topic!r} to its end within {within:g} s",
            details={"topic": topic, "partitions": sorted(wanted), "error": reader.last_error},
        ) from None
    finally:
        await reader.stop()
    log.info(
        "loaded %d quota snapshots of %s partitions %s",
        sum(len(users) for users in found.values()),
        topic,
        sorted(wanted),
    )
    return found
