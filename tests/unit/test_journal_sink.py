"""The journaled event sink over a fake bus: accepted at once whether the bus answers or not.

The fake (`RecordingEventSink`) stands for the bus: `fail_with` makes it refuse
every event, as a broker that is down; clearing it brings the bus back.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import msgspec
import pytest

from infra.errors import EventDeliveryError, JournalFull
from ingest.adapters.journal.sink import JournaledEventSink
from ingest.adapters.journal.store import Journal, JournalLimits
from schemas import Event, UploadEvent, UploadProgress
from tests.fakes import RecordingEventSink
from tests.samples import AnyUploadEvent, upload_sample

LIMITS = JournalLimits(max_bytes=256 * 1024, max_age=3600.0)
DOWN = EventDeliveryError("the broker is away", retriable=True)


def upload_events(upload: str, count: int, *, user: str = "user-1") -> list[AnyUploadEvent]:
    """started, progress..., completed of one upload, numbered in order."""
    ids = {"upload_id": upload, "user_id": user}
    started = upload_sample("ingest.upload.started")
    progress = upload_sample("ingest.upload.progress")
    completed = upload_sample("ingest.upload.completed")
    events: list[AnyUploadEvent] = []
    for n in range(count):
        sample = started if n == 0 else completed if n == count - 1 else progress
        events.append(msgspec.structs.replace(sample, event_id=uuid.uuid4().hex, sequence=n, **ids))
    return events


def lifecycle(events: Sequence[Event]) -> list[str]:
    return [e.event_id for e in events if not isinstance(e, UploadProgress)]


async def journaled(bus: RecordingEventSink, directory: Path) -> JournaledEventSink:
    sink = JournaledEventSink(bus, Journal(directory, LIMITS), retry_seconds=0.05)
    await sink.start()
    return sink


async def test_with_the_bus_up_events_go_straight_to_it(tmp_path: Path) -> None:
    bus = RecordingEventSink()
    sink = await journaled(bus, tmp_path)
    try:
        events = upload_events("u1", 5)
        for event in events:
            await sink.emit(event)
        assert bus.events == events
        assert sink.journal.pending == 0
        assert sink.backlog().broker_up
    finally:
        await sink.stop()


async def test_while_the_bus_is_down_lifecycle_events_are_journaled_and_progress_dropped(
    tmp_path: Path,
) -> None:
    bus = RecordingEventSink()
    sink = await journaled(bus, tmp_path)
    try:
        bus.fail_with = DOWN
        first, second = upload_events("u1", 4), upload_events("u2", 3, user="user-2")
        started = time.monotonic()
        for a, b in zip(first, second, strict=False):
            await sink.emit(a)
            await sink.emit(b)
        await sink.emit(first[-1])
        assert time.monotonic() - started < 1.0
        assert bus.events == []
        state = sink.backlog()
        assert not state.broker_up
        assert state.events == 4  # two started, two completed
        assert state.has_room
        assert sink.watch.progress_dropped == 3

        bus.fail_with = None
        async with asyncio.timeout(5):
            await sink.drained()
        assert lifecycle(bus.events) == lifecycle([*first, *second])
        assert [
            e.event_id for e in bus.events if isinstance(e, UploadEvent) and e.upload_id == "u1"
        ] == lifecycle(first)
        assert sink.backlog().broker_up
        # Drained: new events go straight to the bus again.
        extra = upload_events("u3", 2)
        for event in extra:
            await sink.emit(event)
        assert bus.events[-2:] == extra
    finally:
        await sink.stop()


async def test_new_events_queue_behind_what_the_journal_holds(tmp_path: Path) -> None:
    bus = RecordingEventSink()
    sink = await journaled(bus, tmp_path)
    try:
        bus.fail_with = DOWN
        early = upload_events("u1", 2)
        await sink.emit(early[0])
        # The bus answers again, but the journal still holds u1's started event: u1's
        # completed event must not overtake it.
        bus.fail_with = None
        bus.delay = 0.01
        await sink.emit(early[1])
        async with asyncio.timeout(5):
            await sink.drained()
        assert [e.event_id for e in bus.events] == lifecycle(list(early))
    finally:
        await sink.stop()


async def test_a_full_journal_refuses_new_uploads_and_never_drops(tmp_path: Path) -> None:
    bus = RecordingEventSink()
    bus.fail_with = DOWN
    sink = JournaledEventSink(
        bus, Journal(tmp_path, JournalLimits(max_bytes=64 * 1024, max_age=3600.0))
    )
    await sink.start()
    try:
        accepted: list[Event] = []
        while True:
            try:
                sink.check_room()
            except JournalFull:
                break
            event = upload_events(uuid.uuid4().hex, 2)[0]
            await sink.emit(event)
            accepted.append(event)
        # Uploads already running still get their events in, until the bound itself.
        late = upload_events("late", 2)[1]
        await sink.emit(late)
        assert sink.journal.pending == len(accepted) + 1
        bus.fail_with = None
        async with asyncio.timeout(10):
            await sink.drained()
        assert bus.events == [*accepted, late]
        sink.check_room()
    finally:
        await sink.stop()


async def test_a_restarted_sink_sends_what_a_stopped_one_left(tmp_path: Path) -> None:
    bus = RecordingEventSink()
    bus.fail_with = DOWN
    sink = await journaled(bus, tmp_path)
    events = upload_events("u1", 2)
    for event in events:
        await sink.emit(event)
    started = time.monotonic()
    await sink.stop(within=0.3)
    assert time.monotonic() - started < 2
    assert bus.events == []

    bus.fail_with = None
    again = await journaled(bus, tmp_path)
    try:
        async with asyncio.timeout(5):
            await again.drained()
        assert bus.events == events
    finally:
        await again.stop()


async def test_an_event_the_bus_refuses_for_good_is_raised_not_journaled(tmp_path: Path) -> None:
    bus = RecordingEventSink()
    bus.fail_with = EventDeliveryError("record too large", retriable=False)
    sink = await journaled(bus, tmp_path)
    try:
        with pytest.raises(EventDeliveryError):
            await sink.emit(upload_events("u1", 2)[0])
        assert sink.journal.pending == 0
    finally:
        await sink.stop()


async def test_a_bus_down_at_start_is_asked_until_it_answers_though_nothing_is_journaled(
    tmp_path: Path,
) -> None:
    bus = RecordingEventSink()
    bus.healthy = False
    sink = await journaled(bus, tmp_path)
    try:
        sink.watch.failed(DOWN)  # what the composition says of a bus it could not reach
        progress = upload_events("u1", 3)[1]
        await sink.emit(progress)
        assert bus.events == [], "dropped while the bus is away"
        await asyncio.sleep(0.2)
        assert not sink.backlog().broker_up

        bus.healthy = True
        async with asyncio.timeout(2):
            while not sink.backlog().broker_up:
                await asyncio.sleep(0.01)
        await sink.emit(progress)
        assert bus.events == [progress]
        assert sink.journal.pending == 0
    finally:
        await sink.stop()
