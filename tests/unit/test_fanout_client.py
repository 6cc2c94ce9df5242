"""A client: a bounded queue the hub fills without waiting, one writer that empties it."""

from __future__ import annotations

import asyncio

from consumers.fanout import closecodes
from consumers.fanout.client import Outgoing
from infra.feeds import TopicPartition
from tests.unit.fanout_fakes import FakeConnection, client, settle

TP = TopicPartition("t.uploads", 0)


async def test_messages_are_sent_in_order_by_the_writer() -> None:
    alice, connection = client("alice")
    alice.start()
    for n in range(5):
        assert alice.offer(Outgoing(f"m{n}"))
    await settle()
    assert connection.sent == [f"m{n}" for n in range(5)]
    alice.kick(closecodes.NORMAL, "bye")
    await alice.wait_closed()
    assert connection.closed == (closecodes.NORMAL, b"bye")


async def test_a_full_queue_refuses_at_once_and_a_kick_closes_with_its_code() -> None:
    connection = FakeConnection(stalled=True)
    slow, _ = client("slow", queue_size=3, connection=connection)
    slow.start()
    await settle()
    assert [slow.offer(Outgoing(f"m{n}")) for n in range(4)] == [True, True, True, False]
    await settle()
    # The writer holds the first in a send that does not return: room for one more, no more.
    assert [slow.offer(Outgoing(f"n{n}")) for n in range(2)] == [True, False]
    slow.kick(closecodes.TOO_SLOW, "too slow")
    assert slow.closing
    # The peer never takes anything: the connection is aborted, the writer ends.
    async with asyncio.timeout(2):
        await slow.wait_closed()
    assert connection.aborted


async def test_a_closing_client_takes_everything_silently() -> None:
    alice, connection = client("alice")
    alice.start()
    alice.kick(closecodes.GOING_AWAY, "shutdown")
    assert alice.offer(Outgoing("late"))
    await alice.wait_closed()
    assert connection.sent == []
    assert connection.closed == (closecodes.GOING_AWAY, b"shutdown")


async def test_during_a_replay_live_messages_wait_and_those_below_the_floor_are_dropped() -> None:
    alice, connection = client("alice")
    alice.start()
    alice.begin_replay()
    assert alice.offer(Outgoing("live-4", (TP, 4)))
    assert alice.offer(Outgoing("live-7", (TP, 7)))
    await alice.put("replayed-3")
    await settle()
    assert connection.sent == ["replayed-3"]
    # This replica was behind the cursor: what it reads below 5 the client already has.
    assert alice.end_replay({TP: 5})
    assert alice.offer(Outgoing("live-5", (TP, 5), lambda floor: f"live-5@{floor[TP]}"))
    await settle()
    assert connection.sent == ["replayed-3", "live-7", "live-5@5"]
    alice.kick(closecodes.NORMAL, "bye")
    await alice.wait_closed()


async def test_a_replay_waits_for_room_instead_of_overflowing() -> None:
    alice, connection = client("alice", queue_size=2)
    alice.start()
    alice.begin_replay()
    for n in range(10):
        await alice.put(f"r{n}")
    assert alice.end_replay({})
    await settle()
    assert connection.sent == [f"r{n}" for n in range(10)]
    alice.kick(closecodes.NORMAL, "bye")
    await alice.wait_closed()


async def test_a_peer_that_went_away_ends_the_writer() -> None:
    class Gone(FakeConnection):
        async def send_str(self, data: str) -> None:
            raise ConnectionResetError("gone")

    closed: list[int] = []
    alice, _connection = client("alice", connection=Gone())
    alice._on_closed = lambda c, code: closed.append(code)
    alice.start()
    alice.offer(Outgoing("m"))
    await alice.wait_closed()
    assert closed == [closecodes.GOING_AWAY]
