"""Replay: from any cursor, exactly what came after it, once, in append order; else resync."""

from __future__ import annotations

import msgspec

from consumers.fanout import cursor
from consumers.fanout.client import Client, Outgoing
from consumers.fanout.metrics import FanoutMetrics
from consumers.fanout.replay import replay
from infra.feeds import TopicPartition
from tests.unit.fanout_fakes import (
    TOPICS,
    FakeConnection,
    FakeRanges,
    client,
    record,
    settle,
    upload_event,
)

UPLOADS, PROGRESS = TOPICS[0], TOPICS[1]


def history() -> tuple[FakeRanges, dict[TopicPartition, int]]:
    """Two uploads of alice and one of bob over two partitions of two topics, interleaved."""
    ranges = FakeRanges()
    ends: dict[TopicPartition, int] = {}
    clock = 1_000

    def add(kind: str, user: str, upload: str, sequence: int, topic: str, partition: int) -> None:
        nonlocal clock
        tp = TopicPartition(topic, partition)
        offset = ends.get(tp, 0)
        ranges.add(
            record(upload_event(kind, user, upload, sequence), topic, partition, offset, clock)
        )
        ends[tp] = offset + 1
        clock += 10

    add("started", "alice", "a1", 0, UPLOADS, 0)
    add("started", "bob", "b1", 0, UPLOADS, 1)
    add("progress", "alice", "a1", 1, PROGRESS, 0)
    add("started", "alice", "a2", 0, UPLOADS, 0)
    add("progress", "bob", "b1", 1, PROGRESS, 1)
    add("progress", "alice", "a2", 1, PROGRESS, 1)
    add("progress", "alice", "a1", 2, PROGRESS, 0)
    add("completed", "alice", "a2", 2, UPLOADS, 0)
    add("completed", "alice", "a1", 3, UPLOADS, 0)
    return ranges, ends


def order(connection: FakeConnection) -> list[tuple[object, object]]:
    return [
        (m["session_id"], m["data"]["sequence"])  # type: ignore[index]
        for m in connection.messages()
        if m["session_id"] is not None
    ]


async def replayed(
    ranges: FakeRanges, since: dict[TopicPartition, int], live_from: dict[TopicPartition, int]
) -> tuple[Client, FakeConnection]:
    alice, connection = client("alice", queue_size=4)
    alice.start()
    alice.begin_replay()
    await replay(
        alice, ranges, since, live_from, topics=TOPICS, max_events=100, metrics=FanoutMetrics()
    )
    await settle()
    return alice, connection


async def test_from_the_start_everything_of_the_user_in_append_order() -> None:
    ranges, ends = history()
    alice, connection = await replayed(ranges, {}, ends)
    assert order(connection) == [
        ("a1", 0),
        ("a1", 1),
        ("a2", 0),
        ("a2", 1),
        ("a1", 2),
        ("a2", 2),
        ("a1", 3),
    ]
    assert not alice.replaying


async def test_from_every_cursor_it_sent_exactly_the_rest() -> None:
    ranges, ends = history()
    _, whole = await replayed(ranges, {}, ends)
    everything = order(whole)
    for n, message in enumerate(whole.messages()):
        since = cursor.decode(str(message["cursor"]), TOPICS)
        _, rest = await replayed(ranges, since, ends)
        assert order(rest) == everything[n + 1 :], f"after message {n}"


async def test_live_messages_held_meanwhile_follow_without_duplicates() -> None:
    ranges, ends = history()
    alice, connection = client("alice")
    alice.start()
    alice.begin_replay()
    late = upload_event("progress", "alice", "a3", 1)
    alice.offer(
        Outgoing('{"session_id":"a3","data":{"sequence":1}}', (TopicPartition(PROGRESS, 0), 3))
    )
    await replay(alice, ranges, {}, ends, topics=TOPICS, max_events=100, metrics=FanoutMetrics())
    await settle()
    assert order(connection)[-1] == (late.upload_id, 1)
    assert len(order(connection)) == 8


async def test_a_cursor_ahead_of_this_replica_drops_live_records_it_already_covers() -> None:
    ranges, ends = history()
    # The cursor was written by a replica further on in uploads[0] than this one.
    ahead = {**ends, TopicPartition(UPLOADS, 0): ends[TopicPartition(UPLOADS, 0)] + 2}
    alice, connection = await replayed(ranges, ahead, ends)
    assert order(connection) == []
    assert alice.offer(Outgoing("covered", (TopicPartition(UPLOADS, 0), 5)))
    assert alice.offer(Outgoing("new", (TopicPartition(UPLOADS, 0), 6), lambda floor: "new*"))
    await settle()
    assert connection.sent == ["new*"]


async def test_a_cursor_older_than_retention_gets_resync_then_the_live_feed() -> None:
    ranges, ends = history()
    ranges.oldest[TopicPartition(PROGRESS, 1)] = 1
    alice, connection = await replayed(ranges, {}, ends)
    [message] = connection.messages()
    assert message["event_type"] == "resync"
    # Its cursor is where the live feed starts: a reconnect from it misses nothing more.
    assert cursor.decode(str(message["cursor"]), TOPICS).items() >= ends.items()
    assert alice.offer(Outgoing("live", (TopicPartition(UPLOADS, 0), 9)))
    await settle()
    assert connection.sent[-1] == "live"


async def test_more_than_the_bound_gets_resync() -> None:
    ranges, ends = history()
    alice, connection = client("alice")
    alice.start()
    alice.begin_replay()
    await replay(alice, ranges, {}, ends, topics=TOPICS, max_events=3, metrics=FanoutMetrics())
    await settle()
    assert [m["event_type"] for m in connection.messages()] == ["resync"]
    data = connection.messages()[0]["data"]
    assert "more than 3" in msgspec.json.encode(data).decode()


async def test_a_replay_that_overflows_what_is_held_kicks_the_client() -> None:
    ranges, ends = history()
    alice, _ = client("alice", queue_size=1)
    alice.start()
    alice.begin_replay()
    for n in range(5):  # four times the queue is held at most
        alice.offer(Outgoing(f"live-{n}", (TopicPartition(PROGRESS, 0), 10 + n)))
    await replay(alice, ranges, {}, ends, topics=TOPICS, max_events=100, metrics=FanoutMetrics())
    assert alice.closing
    await alice.wait_closed()
