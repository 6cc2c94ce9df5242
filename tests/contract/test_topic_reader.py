"""TopicReader: reading a whole topic behaves alike on the in-process bus and on Kafka.

Each test has a topic of its own. A reader hands every record, old and new,
to its handler, is ready once it has handed over what the topic held when it
started, and neither a record its handler cannot use nor a handler that
raises stops it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import msgspec
import pytest

from infra.feeds import Record, TopicPartition
from schemas import Event, decode, encode
from tests.contract.feeds import FeedBackend
from tests.samples import SAMPLES, SOURCE


class Handled:
    """A handler that decodes each record as the quota view does, and keeps the events.

    A record that is not a valid event raises InvalidEvent out of the handler:
    the reader must survive it.
    """

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.unknown = 0

    def __call__(self, record: Record) -> None:
        assert record.value is not None
        event = decode(record.value, record.headers)
        if event is None:
            self.unknown += 1
        else:
            self.events.append(event)

    def ids(self) -> set[str]:
        return {event.event_id for event in self.events}


async def publish_event(feeds: FeedBackend, n: int) -> Event:
    sample = SAMPLES["ingest.upload.started"]
    event = msgspec.structs.replace(sample, event_id=f"e-{n}-{uuid.uuid4().hex[:8]}")
    encoded = encode(event, source=SOURCE)
    # Keys spread over the partitions: the reader must read every one.
    await feeds.publish(b"user-%d" % n, encoded.value, encoded.headers)
    return event


async def eventually(condition: Callable[[], bool], seconds: float = 30) -> None:
    """Polls: a reader has no notification but `ready`, and needs none."""
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.02)


async def test_ready_once_caught_up_then_it_sees_later_records(feeds: FeedBackend) -> None:
    before = [await publish_event(feeds, n) for n in range(5)]
    handled = Handled()
    reader = feeds.topic_reader(handled)
    assert not reader.ready.is_set()
    assert not reader.healthy
    await reader.start()
    try:
        # start waits (a bounded time) for the catch-up, and it is quick here.
        assert reader.ready.is_set()
        assert reader.healthy
        assert reader.last_error is None
        assert handled.ids() == {event.event_id for event in before}

        after = [await publish_event(feeds, n) for n in range(5, 8)]
        await eventually(lambda: len(handled.events) == 8)
        assert handled.ids() == {event.event_id for event in before + after}
        assert reader.healthy
    finally:
        await reader.stop()
    assert not reader.healthy


async def test_an_empty_topic_is_ready_at_once(feeds: FeedBackend) -> None:
    handled = Handled()
    reader = feeds.topic_reader(handled)
    await reader.start()
    try:
        assert reader.ready.is_set()
        assert handled.events == []
        event = await publish_event(feeds, 0)
        await eventually(lambda: handled.ids() == {event.event_id})
    finally:
        await reader.stop()
        await reader.stop()  # twice is harmless


async def test_unknown_and_undecodable_records_do_not_stop_it(
    feeds: FeedBackend, caplog: pytest.LogCaptureFixture
) -> None:
    first = await publish_event(feeds, 0)
    valid = encode(first, source=SOURCE)
    from_the_future = [
        (name, b"ingest.upload.from_the_future" if name == "ce_type" else value)
        for name, value in valid.headers
    ]
    await feeds.publish(b"user-1", b"not json", [("ce_type", b"ingest.upload.started")])
    await feeds.publish(b"user-2", valid.value, from_the_future)
    await feeds.publish(b"user-3", b"{}", [])
    handled = Handled()
    reader = feeds.topic_reader(handled)
    await reader.start()
    try:
        assert reader.ready.is_set()
        assert handled.ids() == {first.event_id}
        assert handled.unknown == 1
        await feeds.publish(b"user-4", b"\xff", [("ce_type", b"ingest.upload.started")])
        later = await publish_event(feeds, 5)
        await eventually(lambda: later.event_id in handled.ids())
        assert handled.ids() == {first.event_id, later.event_id}
        assert reader.healthy
        # Skipped, never silently: each failure of the handler is in the log.
        assert caplog.text.count("the handler failed on the record at") == 3
    finally:
        await reader.stop()


async def test_positions_follow_what_was_handed_over(feeds: FeedBackend) -> None:
    published = [await feeds.publish(b"user-%d" % n, b"{}") for n in range(6)]
    seen: list[tuple[int, dict[object, int]]] = []
    reader_box: list[object] = []

    def handler(record: Record) -> None:
        # The reader has moved past the record it hands over.
        reader = reader_box[0]
        seen.append((record.offset, dict(reader.positions())))  # type: ignore[attr-defined]

    reader = feeds.topic_reader(handler)
    reader_box.append(reader)
    assert dict(reader.positions()) == {}
    await reader.start()
    try:
        for offset, positions in seen:
            assert any(at == offset + 1 for at in positions.values())
        ends: dict[TopicPartition, int] = {}
        for where_ in published:
            ends[where_.partition] = max(ends.get(where_.partition, 0), where_.offset + 1)
        assert {tp: reader.positions()[tp] for tp in ends} == ends
        # Every partition has a position, records or not.
        assert set(reader.positions()) == set(feeds.partitions)
    finally:
        await reader.stop()


async def test_since_starts_at_the_first_record_appended_then(feeds: FeedBackend) -> None:
    old = [await publish_event(feeds, n) for n in range(3)]
    await asyncio.sleep(0.05)
    since = time.time()
    await asyncio.sleep(0.05)
    new = [await publish_event(feeds, n) for n in range(3, 6)]
    handled = Handled()
    reader = feeds.topic_reader(handled, since=since)
    await reader.start()
    try:
        assert reader.ready.is_set()
        assert handled.ids() == {event.event_id for event in new}
        assert not handled.ids() & {event.event_id for event in old}
    finally:
        await reader.stop()
