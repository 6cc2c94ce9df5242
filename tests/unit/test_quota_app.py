"""The quota consumer driven by hand on the in-process bus: what it publishes, what it skips,
and how an instance that takes a partition over rebuilds its state from the snapshots."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from consumers.quota import QuotaApp, QuotaLedger, UserQuota, quota_app, snapshot_problems
from consumers.quota.app import check_co_partitioned
from infra.bus import BusTopicReader, InProcessEventBus
from infra.bus.log import BusRecord
from infra.errors import ServiceUnavailable
from infra.feeds import RecordHandler, TopicPartition, TopicReader
from schemas import Event, QuotaUpdated, Topics, decode, event_type, topic_for
from tests.quota_support import DEFAULTS, completed, limits_set
from tests.samples import SAMPLES

TOPICS = Topics()
ALL = frozenset({TopicPartition(TOPICS.uploads, 0), TopicPartition(TOPICS.quota_commands, 0)})


@pytest.fixture
async def bus() -> AsyncIterator[InProcessEventBus]:
    async with InProcessEventBus(TOPICS, source="/quota/unit") as opened:
        yield opened


class CountingSink:
    """The bus's emit, remembering what went through: the compacted topic keeps only the last."""

    def __init__(self, bus: InProcessEventBus) -> None:
        self.bus = bus
        self.emitted: list[Event] = []

    async def emit(self, event: Event) -> None:
        await self.bus.emit(event)
        self.emitted.append(event)


def new_app(bus: InProcessEventBus, sink: CountingSink | None = None) -> QuotaApp:
    def open_reader(topic: str, handler: RecordHandler) -> TopicReader:
        return BusTopicReader(bus, topic, handler, ready_timeout=1.0)

    return quota_app(
        TOPICS,
        sink or CountingSink(bus),
        open_reader,
        bytes_limit=DEFAULTS.bytes_limit,
        uploads_limit=DEFAULTS.uploads_limit,
        period_days=DEFAULTS.period_days,
        load_timeout=2.0,
    )


async def publish(bus: InProcessEventBus, event: Event) -> BusRecord:
    """The event as the consumer reads it: the record the bus appended for it."""
    await bus.emit(event)
    return bus.records(topic_for(event_type(event), TOPICS))[-1]


async def deliver(app: QuotaApp, record: BusRecord) -> None:
    """What the runtime does with a record: decode it and hand it over."""
    event = decode(record.value, record.headers)
    assert event is not None
    await app.handle(event, record)


def snapshots(bus: InProcessEventBus, user_id: str = "alice") -> list[QuotaUpdated]:
    """What the compacted quota topic keeps of the user: their latest snapshot."""
    found = []
    for record in bus.records(TOPICS.quota):
        event = decode(record.value, record.headers)
        if isinstance(event, QuotaUpdated) and event.user_id == user_id:
            found.append(event)
    return found


def usage(state: UserQuota | None) -> tuple[int, int]:
    assert state is not None
    return state.bytes_used, state.uploads_used


async def test_a_completed_upload_publishes_a_full_snapshot_that_adds_up(
    bus: InProcessEventBus,
) -> None:
    app = new_app(bus)
    await app.on_assigned(ALL)
    await deliver(app, await publish(bus, completed("u1", 100)))

    [snapshot] = snapshots(bus)
    assert (snapshot.bytes_used, snapshot.uploads_used) == (100, 1)
    assert (snapshot.bytes_limit, snapshot.uploads_limit) == (DEFAULTS.bytes_limit, 100)
    assert snapshot_problems(snapshot) == []
    assert [(o.topic, o.offset) for o in snapshot.applied_offsets] == [(TOPICS.uploads, 0)]


async def test_the_same_record_twice_is_applied_once(bus: InProcessEventBus) -> None:
    sink = CountingSink(bus)
    app = new_app(bus, sink)
    await app.on_assigned(ALL)
    record = await publish(bus, completed("u1", 100))
    await deliver(app, record)
    await deliver(app, record)

    assert len(sink.emitted) == 1
    assert usage(app.state_of("alice")) == (100, 1)


async def test_the_same_upload_published_again_at_a_new_offset_is_not_charged_again(
    bus: InProcessEventBus,
) -> None:
    sink = CountingSink(bus)
    app = new_app(bus, sink)
    await app.on_assigned(ALL)
    await deliver(app, await publish(bus, completed("u1", 100)))
    await deliver(app, await publish(bus, completed("u1", 100)))  # a new ce_id, a new offset

    assert len(sink.emitted) == 1
    assert usage(app.state_of("alice")) == (100, 1)


async def test_limits_commands_and_uploads_of_one_user_land_in_one_snapshot(
    bus: InProcessEventBus,
) -> None:
    app = new_app(bus)
    await app.on_assigned(ALL)
    await deliver(app, await publish(bus, limits_set(5_000, 3)))
    await deliver(app, await publish(bus, completed("u1", 100)))

    latest = snapshots(bus)[-1]
    assert (latest.bytes_limit, latest.uploads_limit, latest.bytes_used) == (5_000, 3, 100)
    assert {(o.topic, o.offset) for o in latest.applied_offsets} == {
        (TOPICS.quota_commands, 0),
        (TOPICS.uploads, 0),
    }


async def test_other_upload_events_change_nothing(bus: InProcessEventBus) -> None:
    app = new_app(bus)
    await app.on_assigned(ALL)
    for name in ("ingest.upload.started", "ingest.upload.failed", "ingest.upload.cancelled"):
        await deliver(app, await publish(bus, SAMPLES[name]))

    assert bus.records(TOPICS.quota) == []


async def test_a_restarted_instance_skips_what_its_snapshots_already_reflect(
    bus: InProcessEventBus,
) -> None:
    first = new_app(bus)
    await first.on_assigned(ALL)
    records = [await publish(bus, completed(f"u{n}", n)) for n in range(1, 4)]
    records.append(await publish(bus, limits_set(None, 50)))
    for record in records:
        await deliver(first, record)
    # A crash after publishing and before committing: every record comes again.
    sink = CountingSink(bus)
    restarted = new_app(bus, sink)
    await restarted.on_assigned(ALL)
    assert restarted.state_of("alice") == first.state_of("alice")
    for record in records:
        await deliver(restarted, record)

    assert sink.emitted == []  # nothing applied twice, nothing published again
    assert usage(restarted.state_of("alice")) == (6, 3)


async def test_an_instance_loads_lazily_when_it_handles_before_being_told_of_the_partition(
    bus: InProcessEventBus,
) -> None:
    first = new_app(bus)
    record = await publish(bus, completed("u1", 100))
    await deliver(first, record)

    sink = CountingSink(bus)
    second = new_app(bus, sink)
    await deliver(second, record)
    assert usage(second.state_of("alice")) == (100, 1)
    assert sink.emitted == []


async def test_two_instances_hand_a_partition_to_each_other_without_double_counting(
    bus: InProcessEventBus,
) -> None:
    one, two = new_app(bus), new_app(bus)
    records = [await publish(bus, completed(f"u{n}", 10 * n)) for n in range(1, 7)]

    await one.on_assigned(ALL)
    for record in records[:3]:
        await deliver(one, record)
    await one.on_revoked(ALL)
    assert one.state_of("alice") is None

    # The second instance starts before the first one's last commit: records[2] comes again.
    await two.on_assigned(ALL)
    for record in records[2:5]:
        await deliver(two, record)
    await two.on_revoked(ALL)

    # Back to the first one, which must not trust what it knew before.
    await one.on_assigned(ALL)
    for record in records[4:]:
        await deliver(one, record)

    latest = snapshots(bus)[-1]
    assert (latest.bytes_used, latest.uploads_used) == (210, 6)
    assert snapshot_problems(latest) == []


async def test_users_are_kept_apart(bus: InProcessEventBus) -> None:
    app = new_app(bus)
    await app.on_assigned(ALL)
    await deliver(app, await publish(bus, completed("u1", 100, user_id="alice")))
    await deliver(app, await publish(bus, completed("u1", 7, user_id="bob")))

    assert usage(app.state_of("alice")) == (100, 1)
    assert usage(app.state_of("bob")) == (7, 1)


class NeverReady:
    """A topic reader that never catches up: a quota topic that cannot be read."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.ready = asyncio.Event()
        self.healthy = False
        self.last_error: str | None = "broker gone"

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def positions(self) -> dict[TopicPartition, int]:
        return {}


async def test_without_its_snapshots_an_instance_refuses_to_count_and_asks_for_a_retry(
    bus: InProcessEventBus,
) -> None:
    app = QuotaApp(
        TOPICS,
        bus,
        lambda topic, handler: NeverReady(topic),
        QuotaLedger(DEFAULTS),
        load_timeout=0.05,
    )
    await app.on_assigned(ALL)  # logged, not raised: the runtime would only log it
    with pytest.raises(ServiceUnavailable) as raised:
        await deliver(app, await publish(bus, completed("u1", 100)))

    assert raised.value.retriable
    assert bus.records(TOPICS.quota) == []


def test_the_topics_the_ledger_joins_on_share_a_partition_count() -> None:
    check_co_partitioned()
