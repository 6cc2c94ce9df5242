"""What only the bus's consumer groups do: one partition per topic, who gets which topic,
wake-ups, bounds and the bus closing. What they share with Kafka's is in
tests/contract/test_group_consumer.py.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from infra.bus import InProcessEventBus
from infra.errors import RecordsExpired, ServiceUnavailable
from infra.feeds import TopicPartition
from schemas import Topics

SOURCE = "/ingest/unit"


def bus(**options: int) -> InProcessEventBus:
    return InProcessEventBus(Topics(), source=SOURCE, **options)


class Raising:
    async def on_assigned(self, partitions: frozenset[TopicPartition]) -> None:
        raise RuntimeError("a listener bug")

    async def on_revoked(self, partitions: frozenset[TopicPartition]) -> None:
        raise RuntimeError("another listener bug")


async def test_topics_keyed_alike_go_to_the_first_member_and_the_rest_wait() -> None:
    events = bus()
    uploads, commands = events.topics.uploads, events.topics.quota_commands
    first = events.group_consumer("ledger", uploads, commands)
    second = events.group_consumer("ledger", uploads, commands)
    only_commands = events.group_consumer("other", commands)
    await first.start()
    await second.start()
    await only_commands.start()
    assert first.assignment() == {TopicPartition(uploads, 0), TopicPartition(commands, 0)}
    assert second.assignment() == frozenset()
    # Another group is another story: it gets what it subscribed to.
    assert only_commands.assignment() == {TopicPartition(commands, 0)}

    await first.stop()
    await second.getmany(max_wait=0)
    assert second.assignment() == {TopicPartition(uploads, 0), TopicPartition(commands, 0)}


async def test_a_waiting_getmany_wakes_for_a_record_not_at_its_deadline() -> None:
    events = bus()
    member = events.group_consumer("g", events.topics.uploads)
    await member.start()
    waiting = asyncio.create_task(member.getmany(max_wait=30))
    await asyncio.sleep(0)
    events.publish(events.topics.uploads, key=b"k", value=b"v")
    async with asyncio.timeout(1):
        batch = await waiting
    assert [record.value for record in batch[TopicPartition(events.topics.uploads, 0)]] == [b"v"]


@pytest.mark.parametrize("ending", ["bus closes", "member stops"])
async def test_a_waiting_getmany_ends_when_the_bus_closes_or_the_member_stops(ending: str) -> None:
    events = bus()
    member = events.group_consumer("g", events.topics.uploads)
    await member.start()
    waiting = asyncio.create_task(member.getmany(max_wait=30))
    await asyncio.sleep(0)
    if ending == "bus closes":
        events.close()
    else:
        await member.stop()
    async with asyncio.timeout(1):
        with pytest.raises(ServiceUnavailable):
            await waiting
    with pytest.raises(ServiceUnavailable):
        await member.getmany(max_wait=0)
    if ending == "bus closes":
        with pytest.raises(ServiceUnavailable, match="closed"):
            await events.group_consumer("late", events.topics.uploads).start()


async def test_batches_are_bounded_and_no_topic_starves_another() -> None:
    events = bus()
    uploads, progress = events.topics.uploads, events.topics.progress
    for n in range(10):
        events.publish(uploads, key=b"u", value=b"u%d" % n)
        events.publish(progress, key=b"p%d" % n, value=b"p%d" % n)
    member = events.group_consumer("g", uploads, progress)
    await member.start()
    seen: dict[str, list[bytes]] = {uploads: [], progress: []}
    first = await member.getmany(max_records=3)
    assert sum(len(records) for records in first.values()) == 3
    for partition, records in first.items():
        seen[partition.topic] += [record.value for record in records]
    second = await member.getmany(max_records=3)
    for partition, records in second.items():
        seen[partition.topic] += [record.value for record in records]
    assert seen[uploads]
    assert seen[progress]
    # Each topic in offset order, never a record twice.
    assert seen[uploads] == [b"u%d" % n for n in range(len(seen[uploads]))]
    assert seen[progress] == [b"p%d" % n for n in range(len(seen[progress]))]


async def test_a_slow_member_holds_nothing_and_is_told_when_retention_passed_it() -> None:
    events = bus(retention=3)
    uploads = events.topics.uploads
    member = events.group_consumer("g", uploads)
    await member.start()
    for n in range(3):
        events.publish(uploads, key=b"k", value=b"r%d" % n)
    assert [r.value for r in (await member.getmany(max_records=1))[TopicPartition(uploads, 0)]] == [
        b"r0"
    ]
    for n in range(3, 6):
        events.publish(uploads, key=b"k", value=b"r%d" % n)
    with pytest.raises(RecordsExpired, match=r"records 1 to 2 were removed by retention"):
        await member.getmany(max_wait=0)
    await member.seek_to_beginning()
    got = await member.getmany(max_wait=0)
    assert [r.value for r in got[TopicPartition(uploads, 0)]] == [b"r3", b"r4", b"r5"]


async def test_compaction_is_no_loss_but_a_key_forgotten_by_the_bound_is() -> None:
    events = bus(retention=2)
    quota = events.topics.quota  # compacted
    member = events.group_consumer("g", quota)
    await member.start()
    for value in [b"a1", b"a2", b"a3"]:
        events.publish(quota, key=b"a", value=value)
    # Superseded records leave gaps, as Kafka compaction does: the latest is there.
    got = await member.getmany(max_wait=0)
    assert [(r.offset, r.value) for r in got[TopicPartition(quota, 0)]] == [(2, b"a3")]
    await member.commit({TopicPartition(quota, 0): 3})
    await member.stop()

    for key in [b"b", b"c"]:  # a third key pushes the oldest out, unread by the group
        events.publish(quota, key=key, value=key)
    events.publish(quota, key=b"d", value=b"d")
    again = events.group_consumer("g", quota)
    await again.start()
    with pytest.raises(RecordsExpired):
        await again.getmany(max_wait=0)


async def test_a_listener_that_raises_is_logged_and_the_member_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events = bus()
    member = events.group_consumer("g", events.topics.uploads, listener=Raising())
    with caplog.at_level(logging.ERROR, logger="infra.bus"):
        await member.start()
        events.publish(events.topics.uploads, key=b"k", value=b"v")
        assert await member.getmany(max_wait=0)
        await member.stop()
    assert "failed on_assigned" in caplog.text
    assert "failed on_revoked" in caplog.text


async def test_wrong_arguments_are_refused_up_front() -> None:
    events = bus()
    with pytest.raises(ValueError, match="not a topic"):
        events.group_consumer("g", "ingest.nope")
    with pytest.raises(ValueError, match="needs a name"):
        events.group_consumer("", events.topics.uploads)
    with pytest.raises(ValueError, match="at least one topic"):
        events.group_consumer("g")
    member = events.group_consumer("g", events.topics.uploads)
    await member.start()
    with pytest.raises(ValueError, match="max_records"):
        await member.getmany(max_records=0)
    with pytest.raises(ValueError, match="negative"):
        await member.commit({TopicPartition(events.topics.uploads, 0): -1})
