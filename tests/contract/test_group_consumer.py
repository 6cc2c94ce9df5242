"""GroupConsumer: a member of a consumer group behaves alike on the in-process bus and on Kafka.

Each test has a topic of its own (one partition on the bus, several on Kafka)
and its own group names, and asserts only what both promise: every record of
the topic reaches each group once, commits decide where a member starts, a
group shares its partitions among its members, and the listener hears what a
member gains and loses.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager

import pytest

from infra.errors import PartitionNotAssigned, RecordsExpired, ServiceUnavailable
from infra.feeds import GroupConsumer, Record, TopicPartition
from tests.contract.feeds import FeedBackend, Published


class Heard:
    """A rebalance listener that remembers what it heard and, like a consumer runtime, commits
    on revocation what its member has finished (`finished`, kept up to date by `read`)."""

    def __init__(self) -> None:
        self.assigned: list[frozenset[TopicPartition]] = []
        self.revoked: list[frozenset[TopicPartition]] = []
        self.member: GroupConsumer | None = None
        self.finished: dict[TopicPartition, int] = {}

    async def on_assigned(self, partitions: frozenset[TopicPartition]) -> None:
        self.assigned.append(partitions)

    async def on_revoked(self, partitions: frozenset[TopicPartition]) -> None:
        self.revoked.append(partitions)
        mine = {p: o for p, o in self.finished.items() if p in partitions}
        if self.member is not None and mine:
            await self.member.commit(mine)


def group_name() -> str:
    return f"contract-group-{uuid.uuid4().hex[:10]}"


@asynccontextmanager
async def started(member: GroupConsumer) -> AsyncIterator[GroupConsumer]:
    await member.start()
    try:
        yield member
    finally:
        await member.stop()


async def publish(feeds: FeedBackend, first: int, count: int) -> list[Published]:
    """Records r<first>.. with keys spread over the partitions."""
    return [await feeds.publish(b"key-%d" % n, b"r%d" % n) for n in range(first, first + count)]


async def read(
    member: GroupConsumer, count: int, *, seconds: float = 30, heard: Heard | None = None
) -> list[Record]:
    """At least `count` records; each batch counts as finished for `heard` as soon as it comes."""
    got: list[Record] = []
    async with asyncio.timeout(seconds):
        while len(got) < count:
            for records in (await member.getmany(max_wait=0.5)).values():
                got.extend(records)
                if heard is not None:
                    heard.finished.update(next_offsets(records))
    return got


async def read_more(member: GroupConsumer, *, seconds: float = 1.5) -> list[Record]:
    """Whatever else comes within `seconds`: nothing, when all was said."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    got: list[Record] = []
    while (left := deadline - loop.time()) > 0:
        for records in (await member.getmany(max_wait=left)).values():
            got.extend(records)
    return got


def values(records: Iterable[Record]) -> list[bytes | None]:
    return sorted((record.value for record in records), key=lambda v: v or b"")


def names(first: int, count: int) -> list[bytes | None]:
    return sorted((b"r%d" % n for n in range(first, first + count)), key=lambda v: v or b"")


def next_offsets(records: Iterable[Record]) -> dict[TopicPartition, int]:
    """The offset after the last record read in each partition: what a member commits."""
    offsets: dict[TopicPartition, int] = {}
    for record in records:
        partition = TopicPartition(record.topic, record.partition)
        offsets[partition] = max(offsets.get(partition, 0), record.offset + 1)
    return offsets


async def settle(check: Callable[[], bool], seconds: float = 30) -> None:
    """Polls: a Kafka rebalance completes in each member's own background task."""
    async with asyncio.timeout(seconds):
        while not check():
            await asyncio.sleep(0.05)


async def test_a_member_started_again_resumes_after_its_groups_commit(feeds: FeedBackend) -> None:
    group = group_name()
    await publish(feeds, 0, 6)
    async with started(feeds.group_consumer(group)) as member:
        got = await read(member, 6)
        assert values(got) == names(0, 6)
        committed = next_offsets(got)
        await member.commit(committed)
    await publish(feeds, 6, 2)

    async with started(feeds.group_consumer(group)) as again:
        for partition, offset in committed.items():
            assert await again.committed(partition) == offset
        assert values(await read(again, 2)) == names(6, 2)
        assert await read_more(again) == []


async def test_records_not_committed_come_again(feeds: FeedBackend) -> None:
    group = group_name()
    await publish(feeds, 0, 6)
    async with started(feeds.group_consumer(group)) as member:
        got = await read(member, 6)
        # Only the first record of each partition is finished.
        first = {}
        for record in sorted(got, key=lambda r: r.offset, reverse=True):
            first[TopicPartition(record.topic, record.partition)] = record
        await member.commit({p: record.offset + 1 for p, record in first.items()})
    unfinished = [r for r in got if r not in first.values()]

    async with started(feeds.group_consumer(group)) as again:
        assert values(await read(again, len(unfinished))) == values(unfinished)
        assert await read_more(again) == []


async def test_two_groups_each_get_every_record(feeds: FeedBackend) -> None:
    await publish(feeds, 0, 5)
    async with (
        started(feeds.group_consumer(group_name())) as one,
        started(feeds.group_consumer(group_name())) as other,
    ):
        assert values(await read(one, 5)) == names(0, 5)
        assert values(await read(other, 5)) == names(0, 5)


async def test_a_group_shares_its_partitions_and_the_survivor_resumes_at_the_commit(
    feeds: FeedBackend,
) -> None:
    group = group_name()
    heard_a, heard_b = Heard(), Heard()
    a = feeds.group_consumer(group, heard_a)
    b = feeds.group_consumer(group, heard_b)
    heard_b.member = b
    await a.start()
    async with started(b):
        await settle(
            lambda: (
                not (a.assignment() & b.assignment())
                and a.assignment() | b.assignment() == feeds.partitions
            )
        )
        await publish(feeds, 0, 6)
        seen_a: list[Record] = []
        seen_b: list[Record] = []
        async with asyncio.timeout(30):
            while len(seen_a) + len(seen_b) < 6:
                for records in (await a.getmany(max_wait=0.2)).values():
                    seen_a.extend(records)
                for records in (await b.getmany(max_wait=0.2)).values():
                    seen_b.extend(records)
                    heard_b.finished.update(next_offsets(records))
        # Each record went to exactly one member of the group.
        assert values(seen_a + seen_b) == names(0, 6)
        assert {r.partition for r in seen_a}.isdisjoint({r.partition for r in seen_b})
        if seen_a:
            await a.commit(next_offsets(seen_a))
        if seen_b:
            await b.commit(next_offsets(seen_b))

        held_by_a = a.assignment()
        await a.stop()
        if held_by_a:
            assert heard_a.revoked[-1] == held_by_a
        assert a.assignment() == frozenset()

        await publish(feeds, 6, 3)
        # The survivor takes over what a committed: nothing of it again, only the new
        # (Kafka revokes b's own partitions too: b commits what it finished, as it must).
        assert values(await read(b, 3, heard=heard_b)) == names(6, 3)
        assert await read_more(b) == []
        assert b.assignment() == feeds.partitions
        assert heard_b.assigned
        assert heard_b.assigned[-1] <= feeds.partitions


async def test_what_the_listener_commits_on_stop_is_where_the_next_member_starts(
    feeds: FeedBackend,
) -> None:
    group = group_name()
    sent = await publish(feeds, 0, 4)
    heard = Heard()
    member = feeds.group_consumer(group, heard)
    heard.member = member
    async with started(member):
        assert heard.assigned[-1] == feeds.partitions
        assert member.assignment() == feeds.partitions
        # Finished: everything; the listener commits it when the member stops.
        got = await read(member, 4, heard=heard)
    assert heard.revoked[-1] == feeds.partitions

    async with started(feeds.group_consumer(group)) as again:
        for partition in {published.partition for published in sent}:
            assert await again.committed(partition) == next_offsets(got)[partition]
        assert await read_more(again) == []


async def test_a_partition_not_assigned_cannot_be_committed_or_moved(feeds: FeedBackend) -> None:
    member = feeds.group_consumer(group_name())
    elsewhere = TopicPartition(feeds.topic, 99)
    async with started(member):
        with pytest.raises(PartitionNotAssigned):
            await member.commit({elsewhere: 1})
        with pytest.raises(PartitionNotAssigned):
            member.seek(elsewhere, 0)
    with pytest.raises(ServiceUnavailable):
        await member.commit({TopicPartition(feeds.topic, 0): 1})
    with pytest.raises(ServiceUnavailable):
        await member.getmany(max_wait=0)


async def test_a_paused_partition_yields_nothing_until_resumed(feeds: FeedBackend) -> None:
    sent = [await feeds.publish(b"one-key", b"r%d" % n) for n in range(3)]
    partition = sent[0].partition
    async with started(feeds.group_consumer(group_name())) as member:
        member.pause(partition)
        assert await read_more(member, seconds=1.0) == []
        member.resume(partition)
        assert values(await read(member, 3)) == names(0, 3)


async def test_a_seek_reads_a_partition_again_from_there(feeds: FeedBackend) -> None:
    sent = [await feeds.publish(b"one-key", b"r%d" % n) for n in range(4)]
    partition = sent[0].partition
    async with started(feeds.group_consumer(group_name())) as member:
        assert values(await read(member, 4)) == names(0, 4)
        member.seek(partition, sent[2].offset)
        assert values(await read(member, 2)) == [b"r2", b"r3"]


async def test_a_member_behind_retention_is_told_and_may_accept_the_loss(
    feeds: FeedBackend,
) -> None:
    group = group_name()
    sent = [await feeds.publish(b"one-key", b"r%d" % n) for n in range(6)]
    partition = sent[0].partition
    async with started(feeds.group_consumer(group)) as member:
        await member.commit({partition: sent[1].offset})
    await feeds.expire(partition, sent[4].offset)

    async with started(feeds.group_consumer(group)) as again:
        with pytest.raises(RecordsExpired):
            await read(again, 1)
        await again.seek_to_beginning(partition)
        got = await read(again, 1)
        assert all(record.offset >= sent[4].offset for record in got)
        assert not {b"r1", b"r2", b"r3"} & {record.value for record in got}
