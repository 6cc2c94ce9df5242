"""Replay: what a reconnecting client missed, read back from Kafka, then the live feed.

The client hands back the cursor of the last message it got. Its live feed
on this replica starts at `live_from` (the hub's positions when it was
registered), so the replay reads each partition from the cursor's offset up
to `live_from`, keeps the events the client may see, and sends them in the
order they were appended (partitions merged by record timestamp, each
partition kept in offset order). The live messages that arrived meanwhile
were held by the client; they are let through afterwards, except those
below the cursor on a partition where this replica is behind the one that
wrote the cursor. So every event comes once: from the replay or live.

Each replayed message carries a cursor that is valid on its own: for each
partition, the offset of the next replayed event not yet sent there, or the
end of its range once all are; partitions not replayed keep the larger of
the cursor's offset and `live_from`.

What it costs: one read of every partition of the four topics from the
cursor to now (all users' records, filtered here), through one of a few
shared consumers; at most `max_events` kept events in memory, all of them
the client's. A cursor older than retention (RecordsExpired), a replay over
`max_events` or a replay Kafka cannot serve gets a `resync` message instead,
and the live feed from `live_from`.

How it fails: never raises for the above; a client that cannot take what is
held for it is kicked as too slow.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from consumers.fanout import closecodes, cursor
from consumers.fanout.client import Client
from consumers.fanout.messages import notice, render, translate
from consumers.fanout.metrics import FanoutMetrics
from infra.errors import RecordsExpired, ServiceUnavailable
from infra.feeds import OffsetRange, RangeReader, Record, TopicPartition
from schemas import InvalidEvent, decode
from schemas.live import LiveMessage

log = logging.getLogger(__name__)

Positions = Mapping[TopicPartition, int]


@dataclass(frozen=True)
class _Kept:
    timestamp: int
    offset: int
    message: LiveMessage


@dataclass
class _Collector:
    client: Client
    max_events: int
    kept: dict[TopicPartition, list[_Kept]] = field(default_factory=dict)
    count: int = 0
    overflow: bool = False

    def __call__(self, record: Record) -> None:
        if self.overflow or record.value is None:
            return
        try:
            event = decode(record.value, record.headers)
        except InvalidEvent:
            return
        message = translate(event) if event is not None else None
        if message is None or not self.client.scope.wants(message.user_id, message.session_id):
            return
        if self.count >= self.max_events:
            self.overflow = True
            return
        self.count += 1
        tp = TopicPartition(record.topic, record.partition)
        self.kept.setdefault(tp, []).append(_Kept(record.timestamp, record.offset, message))


async def replay(
    client: Client,
    reader: RangeReader,
    since: Positions,
    live_from: Positions,
    *,
    topics: Sequence[str],
    max_events: int,
    metrics: FanoutMetrics,
) -> None:
    """Send `client` what it missed since `since`, then let its live feed through."""
    order = {topic: n for n, topic in enumerate(topics)}
    ranges = {
        tp: OffsetRange(since.get(tp, 0), end)
        for tp, end in sorted(live_from.items(), key=lambda item: (order[item[0].topic], item[0]))
        if since.get(tp, 0) < end
    }
    collector = _Collector(client, max_events)
    reason: str | None = None
    try:
        await reader.read(ranges, collector)
    except RecordsExpired:
        reason = "the cursor is older than what Kafka keeps"
    except ServiceUnavailable as error:
        log.warning("a replay failed: %s", error)
        reason = "the events since the cursor could not be read"
    if reason is None and collector.overflow:
        reason = f"more than {max_events} events since the cursor"
    if reason is not None:
        metrics.replays.labels("resync").inc()
        await client.put(
            render(notice("resync", None, {"reason": reason}), cursor.encode(live_from, topics))
        )
        _go_live(client, live_from, live_from)
        return
    base = {tp: max(since.get(tp, 0), live_from.get(tp, 0)) for tp in {*since, *live_from}}
    await _send_in_order(client, collector.kept, ranges, base, topics, metrics)
    metrics.replays.labels("replayed").inc()
    _go_live(client, since, live_from)


async def _send_in_order(
    client: Client,
    kept: dict[TopicPartition, list[_Kept]],
    ranges: Mapping[TopicPartition, OffsetRange],
    base: dict[TopicPartition, int],
    topics: Sequence[str],
    metrics: FanoutMetrics,
) -> None:
    positions = dict(base)
    for tp, wanted in ranges.items():
        events = kept.get(tp)
        positions[tp] = events[0].offset if events else wanted.end
    streams = [
        [(item.timestamp, n, tp, index) for index, item in enumerate(items)]
        for n, (tp, items) in enumerate(kept.items())
    ]
    # heapq.merge keeps each partition's own (offset) order whatever the timestamps say.
    for _, _, tp, index in heapq.merge(*streams, key=lambda entry: entry[0]):
        items = kept[tp]
        positions[tp] = items[index + 1].offset if index + 1 < len(items) else ranges[tp].end
        await client.put(render(items[index].message, cursor.encode(positions, topics)))
        metrics.replayed.inc()


def _go_live(client: Client, since: Positions, live_from: Positions) -> None:
    # Where this replica is behind the cursor, live records below it were replayed elsewhere.
    floor = {tp: offset for tp, offset in since.items() if offset > live_from.get(tp, 0)}
    if not client.end_replay(floor):
        client.kick(closecodes.TOO_SLOW, "too slow: the live messages held during the replay")
