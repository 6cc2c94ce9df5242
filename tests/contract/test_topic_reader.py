"""TopicReader: reading a whole topic behaves alike on the in-process bus and on Kafka.

Each test has a topic of its own. A reader hands every record, old and new,
to its handler, is ready once it has handed over what the topic held when it
started, and neither a record its handler cannot use nor a handler that
raises stops it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import msgspec
import pytest

from infra.feeds import Record
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
