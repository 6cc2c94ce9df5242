"""Consumer groups on the in-process bus: members share topics, commit offsets and resume.

A topic of the bus is one partition, so a group has one partition per topic.
As Kafka's range assignor does with one partition per topic, each topic goes
to the first member (in join order) subscribed to it; other members
subscribed to it stay idle on it, as Kafka members beyond the partition count
do. Topics keyed alike (the quota ledger reads uploads and quota commands,
both keyed by user) therefore always go to the same member. A partition only
changes hands when its owner stops: the owner's listener hears `on_revoked`
first (commit there), then the next member takes the partition at the
group's committed offset, or at the oldest retained record when the group
never committed one. The member hears `on_assigned`, and `assignment()`
changes, in its next `getmany`.

Members read the topic logs directly, as Kafka consumers fetch, so a member
that falls behind holds no queue: memory stays bounded by the logs'
retention. Committed offsets live as long as the bus: a member started again
with the same group id resumes from them, and records it did not commit come
again. Different groups never share anything.

How it fails: `getmany` raises RecordsExpired when a position is older than
what its topic still retains (the member fell behind retention, or the group
committed long ago); `seek_to_beginning` accepts the loss. `commit` and
`seek` raise PartitionNotAssigned for a partition the member does not own.
Once the bus closes (or the member stops), `start`, `getmany` and `commit`
raise ServiceUnavailable, not retriable, and a `getmany` waiting in another
task wakes up to raise it. A listener that raises is logged and ignored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from infra.bus.log import BusRecord, TopicLog
from infra.errors import PartitionNotAssigned, RecordsExpired, ServiceUnavailable
from infra.feeds import EndOffsets, GroupConsumer, RebalanceListener, TopicPartition

log = logging.getLogger(__name__)

_PARTITION: Final = 0


class GroupCoordinator:
    """The groups of one bus: members in join order, committed offsets, who owns what."""

    def __init__(self, logs: Mapping[str, TopicLog]) -> None:
        self._logs = logs
        self._members: dict[str, list[BusGroupConsumer]] = {}
        self._committed: dict[str, dict[TopicPartition, int]] = {}
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def log(self, topic: str) -> TopicLog:
        return self._logs[topic]

    def join(self, member: BusGroupConsumer) -> None:
        if self._closed:
            raise ServiceUnavailable("the event bus is closed", retriable=False)
        # A newcomer comes last, so joining never takes a topic from anyone.
        self._members.setdefault(member.group_id, []).append(member)

    def leave(self, member: BusGroupConsumer) -> None:
        members = self._members.get(member.group_id, [])
        if member in members:
            members.remove(member)
        for other in members:
            other.wake()

    def assignment(self, member: BusGroupConsumer) -> frozenset[TopicPartition]:
        return frozenset(
            TopicPartition(topic, _PARTITION)
            for topic in member.topics
            if self._owner(member.group_id, topic) is member
        )

    def owns(self, member: BusGroupConsumer, partition: TopicPartition) -> bool:
        return (
            partition.partition == _PARTITION
            and self._owner(member.group_id, partition.topic) is member
        )

    def commit(self, group_id: str, offsets: Mapping[TopicPartition, int]) -> None:
        self._committed.setdefault(group_id, {}).update(offsets)

    def committed(self, group_id: str, partition: TopicPartition) -> int | None:
        return self._committed.get(group_id, {}).get(partition)

    def notify(self, topic: str) -> None:
        """A record was appended to `topic`: wake the members that may read it."""
        for members in self._members.values():
            for member in members:
                if topic in member.topics:
                    member.wake()

    def close(self) -> None:
        self._closed = True
        for members in self._members.values():
            for member in members:
                member.wake()

    def _owner(self, group_id: str, topic: str) -> BusGroupConsumer | None:
        for member in self._members.get(group_id, []):
            if topic in member.topics:
                return member
        return None


class BusGroupConsumer:
    """One member of a consumer group on the bus: `infra.feeds.GroupConsumer`."""

    def __init__(
        self,
        coordinator: GroupCoordinator,
        group_id: str,
        topics: frozenset[str],
        listener: RebalanceListener | None = None,
    ) -> None:
        if not group_id:
            raise ValueError("a consumer group needs a name")
        if not topics:
            raise ValueError("a group consumer reads at least one topic")
        self._coordinator = coordinator
        self._group_id = group_id
        self._topics = topics
        self._listener = listener
        self._joined = False
        self._assigned: frozenset[TopicPartition] = frozenset()
        self._positions: dict[TopicPartition, int] = {}
        self._paused: set[TopicPartition] = set()
        self._wakeup = asyncio.Event()
        # One rebalance at a time, so a listener never hears the same change twice.
        self._rebalancing = asyncio.Lock()
        self._turn = 0

    @property
    def group_id(self) -> str:
        return self._group_id

    @property
    def topics(self) -> frozenset[str]:
        return self._topics

    async def start(self) -> None:
        if self._joined:
            return
        self._coordinator.join(self)
        self._joined = True
        await self._rebalance()

    async def stop(self) -> None:
        if not self._joined:
            return
        async with self._rebalancing:
            try:
                if self._assigned:
                    await self._tell_revoked(self._assigned)
            finally:
                self._joined = False
                self._assigned = frozenset()
                self._positions.clear()
                self._paused.clear()
                self._coordinator.leave(self)
                self._wakeup.set()

    def assignment(self) -> frozenset[TopicPartition]:
        return self._assigned

    async def getmany(
        self, *, max_wait: float = 1.0, max_records: int = 500
    ) -> dict[TopicPartition, list[BusRecord]]:
        if max_records < 1:
            raise ValueError("max_records must be at least 1")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait
        while True:
            self._check_running()
            await self._rebalance()
            self._check_running()
            batch = self._take(max_records)
            remaining = deadline - loop.time()
            if batch or remaining <= 0:
                return batch
            # Nothing can be appended between _take and here: no await in between.
            self._wakeup.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._wakeup.wait()
            except TimeoutError:
                pass

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        self._check_running()
        for partition, offset in offsets.items():
            if offset < 0:
                raise ValueError(f"cannot commit a negative offset for {partition}")
            if partition not in self._assigned or not self._coordinator.owns(self, partition):
                raise self._not_assigned(partition, "commit")
        self._coordinator.commit(self._group_id, offsets)

    async def committed(self, partition: TopicPartition) -> int | None:
        return self._coordinator.committed(self._group_id, partition)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        if offset < 0:
            raise ValueError(f"cannot seek to a negative offset in {partition}")
        if partition not in self._assigned:
            raise self._not_assigned(partition, "seek")
        self._positions[partition] = offset

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        for partition in partitions or tuple(self._assigned):
            if partition not in self._assigned:
                raise self._not_assigned(partition, "seek")
            self._positions[partition] = self._coordinator.log(partition.topic).start_offset

    async def end_offsets(self, partitions: frozenset[TopicPartition]) -> dict[TopicPartition, int]:
        """`infra.feeds.EndOffsets`: the offset the next record of each topic will get."""
        return {
            partition: self._coordinator.log(partition.topic).next_offset
            for partition in partitions
        }

    def pause(self, *partitions: TopicPartition) -> None:
        for partition in partitions:
            if partition not in self._assigned:
                raise self._not_assigned(partition, "pause")
        self._paused.update(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        for partition in partitions:
            if partition not in self._assigned:
                raise self._not_assigned(partition, "resume")
        self._paused.difference_update(partitions)
        self._wakeup.set()

    def wake(self) -> None:
        """Called by the coordinator: records, a departure or the bus closing may need a look."""
        self._wakeup.set()

    async def _rebalance(self) -> None:
        async with self._rebalancing:
            while self._joined:
                current = self._coordinator.assignment(self)
                revoked = self._assigned - current
                added = current - self._assigned
                if revoked:
                    await self._tell_revoked(revoked)
                    self._assigned -= revoked
                    for partition in revoked:
                        self._positions.pop(partition, None)
                        self._paused.discard(partition)
                elif added:
                    self._assigned = current
                    for partition in added:
                        committed = self._coordinator.committed(self._group_id, partition)
                        self._positions[partition] = (
                            committed
                            if committed is not None
                            else self._coordinator.log(partition.topic).start_offset
                        )
                    await self._tell_assigned(added)
                else:
                    return

    def _take(self, max_records: int) -> dict[TopicPartition, list[BusRecord]]:
        partitions = sorted(self._assigned - self._paused)
        # Check every position before moving any: an error must not lose a batch already taken.
        for partition in partitions:
            self._check_retained(partition)
        # Start with a different partition each time, so a busy topic cannot starve the others.
        self._turn = (self._turn + 1) % max(1, len(partitions))
        batch: dict[TopicPartition, list[BusRecord]] = {}
        budget = max_records
        for partition in partitions[self._turn :] + partitions[: self._turn]:
            records = self._coordinator.log(partition.topic).read(
                self._positions[partition], budget
            )
            if records:
                batch[partition] = records
                self._positions[partition] = records[-1].offset + 1
                budget -= len(records)
                if budget == 0:
                    break
        return batch

    def _check_retained(self, partition: TopicPartition) -> None:
        position = self._positions[partition]
        start = self._coordinator.log(partition.topic).start_offset
        if position < start:
            raise RecordsExpired(
                f"group {self._group_id!r} is at offset {position} of {partition.topic}, but "
                f"the bus keeps it only from offset {start} on: records {position} to "
                f"{start - 1} were removed by retention before they were read",
                details={
                    "group_id": self._group_id,
                    "topic": partition.topic,
                    "partition": partition.partition,
                    "position": position,
                    "start_offset": start,
                },
            )

    def _check_running(self) -> None:
        if self._coordinator.closed:
            raise ServiceUnavailable("the event bus is closed", retriable=False)
        if not self._joined:
            raise ServiceUnavailable(
                f"the member of group {self._group_id!r} is not started", retriable=False
            )

    def _not_assigned(self, partition: TopicPartition, action: str) -> PartitionNotAssigned:
        return PartitionNotAssigned(
            f"cannot {action} {partition.topic}[{partition.partition}]: it is not assigned to "
            f"this member of group {self._group_id!r}",
            details={"group_id": self._group_id, "topic": partition.topic},
        )

    async def _tell_assigned(self, partitions: frozenset[TopicPartition]) -> None:
        if self._listener is None:
            return
        try:
            await self._listener.on_assigned(partitions)
        except Exception:
            log.exception("the rebalance listener of group %s failed on_assigned", self._group_id)

    async def _tell_revoked(self, partitions: frozenset[TopicPartition]) -> None:
        if self._listener is None:
            return
        try:
            await self._listener.on_revoked(partitions)
        except Exception:
            log.exception("the rebalance listener of group %s failed on_revoked", self._group_id)


if TYPE_CHECKING:

    def _implements(member: BusGroupConsumer) -> GroupConsumer:
        return member

    def _tells_ends(member: BusGroupConsumer) -> EndOffsets:
        return member
