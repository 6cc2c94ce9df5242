"""The hub: by user and by session, admins everything, limits, slow clients kicked alone."""

from __future__ import annotations

import dataclasses

import msgspec
import pytest

from consumers.fanout import closecodes, cursor
from consumers.fanout.hub import LimitReached
from infra.feeds import TopicPartition
from schemas import QuotaUpdated, UploadCompleted
from tests.samples import SAMPLES
from tests.unit.fanout_fakes import (
    TOPICS,
    FakeConnection,
    FakeReader,
    client,
    hub,
    record,
    settle,
    upload_event,
)

UPLOADS, PROGRESS = TOPICS[0], TOPICS[1]


def types(connection: FakeConnection) -> list[tuple[object, object]]:
    return [(m["event_type"], m["session_id"]) for m in connection.messages()]


async def test_each_user_gets_their_own_uploads_and_an_admin_who_asks_gets_all() -> None:
    the_hub = hub()
    alice, to_alice = client("alice")
    bob, to_bob = client("bob")
    root, to_root = client("root", admin=True, see_all=True)
    root_own, to_root_own = client("root", admin=True)  # an admin not asking: their own only
    for c in (alice, bob, root, root_own):
        the_hub.register(c)
        c.start()
    the_hub.handle(record(upload_event("started", "alice", "a1", 0), UPLOADS, 0, 0))
    the_hub.handle(record(upload_event("progress", "bob", "b1", 1), PROGRESS, 3, 0))
    the_hub.handle(record(upload_event("completed", "alice", "a1", 2), UPLOADS, 0, 1))
    await settle()
    assert types(to_alice) == [("upload_started", "a1"), ("duplicate_detected", "a1")]
    assert types(to_bob) == [("upload_progress", "b1")]
    assert types(to_root) == [
        ("upload_started", "a1"),
        ("upload_progress", "b1"),
        ("duplicate_detected", "a1"),
    ]
    assert to_root_own.sent == []


async def test_a_completion_carries_the_ids_and_the_results_page() -> None:
    the_hub = hub()
    alice, to_alice = client("alice")
    the_hub.register(alice)
    alice.start()
    done = msgspec.structs.replace(upload_event("completed", "alice", "a1", 3), duplicate_of=None)
    assert isinstance(done, UploadCompleted)
    the_hub.handle(record(done, UPLOADS, 0, 0))
    await settle()
    [message] = to_alice.messages()
    assert message["event_type"] == "upload_complete"
    data = message["data"]
    assert isinstance(data, dict)
    assert data["video_id"] == done.video_id
    assert data["redirect_url"] == f"/dashboard/videos/{done.video_id}/results"
    assert set(message) == {"event_type", "session_id", "user_id", "data", "timestamp", "cursor"}


async def test_a_session_scope_narrows_the_feed_but_keeps_the_quota() -> None:
    the_hub = hub()
    narrow, to_narrow = client("alice", sessions={"a2"})
    the_hub.register(narrow)
    narrow.start()
    the_hub.handle(record(upload_event("started", "alice", "a1", 0), UPLOADS, 0, 0))
    the_hub.handle(record(upload_event("started", "alice", "a2", 0), UPLOADS, 0, 1))
    quota = msgspec.structs.replace(SAMPLES["ingest.quota.updated"], user_id="alice")
    assert isinstance(quota, QuotaUpdated)
    the_hub.handle(record(quota, TOPICS[3], 0, 0))
    await settle()
    assert types(to_narrow) == [("upload_started", "a2"), ("quota_updated", None)]
    # The quota's ledger is the quota consumer's business, not the feed's.
    assert "counted_uploads" not in to_narrow.messages()[1]["data"]  # type: ignore[operator]


async def test_every_message_carries_the_cursor_of_its_own_record() -> None:
    the_hub = hub()
    reader = FakeReader({TopicPartition(UPLOADS, 0): 0, TopicPartition(UPLOADS, 1): 40})
    the_hub.follow(reader)
    alice, to_alice = client("alice")
    the_hub.register(alice)
    alice.start()
    the_hub.handle(record(upload_event("started", "alice", "a1", 0), UPLOADS, 0, 7))
    await settle()
    [message] = to_alice.messages()
    positions = cursor.decode(str(message["cursor"]), TOPICS)
    assert positions[TopicPartition(UPLOADS, 0)] == 8
    assert positions[TopicPartition(UPLOADS, 1)] == 40


async def test_a_record_read_twice_is_sent_once() -> None:
    the_hub = hub()
    alice, to_alice = client("alice")
    the_hub.register(alice)
    alice.start()
    event = record(upload_event("started", "alice", "a1", 0), UPLOADS, 0, 0)
    the_hub.handle(event)
    the_hub.handle(event)
    await settle()
    assert len(to_alice.sent) == 1


async def test_a_client_that_falls_behind_is_kicked_and_the_others_keep_receiving() -> None:
    the_hub = hub()
    stuck, _to_stuck = client("alice", queue_size=2, connection=FakeConnection(stalled=True))
    fine, to_fine = client("alice")
    for c in (stuck, fine):
        the_hub.register(c)
        c.start()
    await settle()
    for n in range(6):
        the_hub.handle(record(upload_event("progress", "alice", "a1", n), PROGRESS, 0, n))
    await settle()
    assert stuck.closing
    assert the_hub.metrics.too_slow._value.get() == 1
    assert [m["data"]["sequence"] for m in to_fine.messages()] == list(range(6))  # type: ignore[index]


def test_limits_per_user_and_in_total_refuse_with_their_close_codes() -> None:
    the_hub = hub(max_per_user=2, max_total=3)
    the_hub.register(client("alice")[0])
    the_hub.register(client("alice")[0])
    with pytest.raises(LimitReached) as per_user:
        the_hub.register(client("alice")[0])
    assert per_user.value.code == closecodes.USER_LIMIT
    bob = client("bob")[0]
    the_hub.register(bob)
    with pytest.raises(LimitReached) as total:
        the_hub.register(client("carol")[0])
    assert total.value.code == closecodes.SERVICE_FULL
    the_hub.unregister(bob)
    the_hub.unregister(bob)  # twice is harmless
    the_hub.register(client("carol")[0])
    assert the_hub.connections == 3


async def test_heartbeats_reach_every_client_not_being_replayed() -> None:
    the_hub = hub()
    alice, to_alice = client("alice")
    bob, to_bob = client("bob")
    for c in (alice, bob):
        the_hub.register(c)
        c.start()
    bob.begin_replay()
    the_hub.heartbeat()
    await settle()
    assert types(to_alice) == [("heartbeat", None)]
    assert to_bob.sent == []


async def test_a_record_that_is_not_an_event_is_skipped() -> None:
    the_hub = hub()
    alice, to_alice = client("alice")
    the_hub.register(alice)
    alice.start()
    good = record(upload_event("started", "alice", "a1", 0), UPLOADS, 0, 0)
    the_hub.handle(dataclasses.replace(good, value=b"not json"))
    the_hub.handle(record(upload_event("started", "alice", "a1", 0), UPLOADS, 0, 1))
    await settle()
    assert len(to_alice.sent) == 1


async def test_a_floor_ahead_of_the_replica_raises_cursors_until_the_replica_passes_it() -> None:
    the_hub = hub()
    tp = TopicPartition(UPLOADS, 0)
    the_hub.follow(FakeReader({tp: 5}))
    alice, to_alice = client("alice")
    the_hub.register(alice)
    alice.start()
    alice.floor = {tp: 10}  # a replay's cursor came from a replica further on
    the_hub.heartbeat()
    await settle()
    assert cursor.decode(str(to_alice.messages()[-1]["cursor"]), TOPICS)[tp] == 10
    the_hub.handle(record(upload_event("started", "alice", "a1", 0), UPLOADS, 0, 12))
    the_hub.heartbeat()
    await settle()
    assert alice.floor == {}
    assert cursor.decode(str(to_alice.messages()[-1]["cursor"]), TOPICS)[tp] == 13
