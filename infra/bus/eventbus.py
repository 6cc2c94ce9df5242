"""The in-process event bus: the event sink of `ingest dev` and of tests, readable like Kafka.

`emit` encodes each event exactly as the Kafka sink does (`schemas.encode`:
the same key, value and CloudEvents headers, routed by `schemas.topic_for`)
and appends the record to its topic's log (`infra.bus.log`: one partition per
topic, bounded by `retention`, compacted topics keeping the latest record per
key). Records are read in two ways, as from Kafka:

- `subscribe`: every record of some topics, retained ones first when
  `from_beginning`, then live ones pushed as they are appended, in emit order
  across the topics (`infra.bus.subscription`);
- `group_consumer`: a member of a consumer group with committed offsets
  (`infra.bus.groups`), the same interface as the Kafka group consumer.

For one event loop in one process: call everything from the loop's thread.

How it fails: `emit` and `publish` never wait for a reader. A subscription
that falls more than `queue_size` records behind is dropped (logged; its
iterator raises SubscriberDropped); a group member further behind than
retention is told by RecordsExpired. `emit` after `close` raises
EventDeliveryError, and `check`, `subscribe` and a member's `start`
ServiceUnavailable; `close` ends every subscription at once and makes every
member's `getmany` raise. An event type without a topic raises KeyError, as
in the Kafka sink; an unknown topic name, ValueError.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

from infra.bus.groups import BusGroupConsumer, GroupCoordinator
from infra.bus.log import BusRecord, TopicLog
from infra.bus.subscription import Subscription
from infra.errors import EventDeliveryError, ServiceUnavailable
from infra.feeds import RebalanceListener, RecordPublisher
from schemas import Event, Topics, encode, event_type, topic_for

log = logging.getLogger(__name__)

DEFAULT_RETENTION: Final = 10_000
DEFAULT_QUEUE_SIZE: Final = 1_000


class InProcessEventBus:
    """`EventSink` and a Kafka-like log of every topic of `topics`, for one process."""

    def __init__(
        self,
        topics: Topics,
        *,
        source: str,
        retention: int = DEFAULT_RETENTION,
        queue_size: int = DEFAULT_QUEUE_SIZE,
    ) -> None:
        if not source:
            raise ValueError("a CloudEvents source must not be empty")
        if retention < 1 or queue_size < 1:
            raise ValueError("retention and queue_size must be at least 1")
        self._topics = topics
        self._source = source
        self._queue_size = queue_size
        self._logs = {
            name: TopicLog(
                name,
                compacted="compact" in spec.config.get("cleanup.policy", ""),
                retention=retention,
            )
            for name, spec in topics.specs()
        }
        self._subscribers: dict[str, list[Subscription]] = {name: [] for name in self._logs}
        self._groups = GroupCoordinator(self._logs)
        # Orders records across topics, so a reader of several sees them in emit order.
        self._sequence = itertools.count()
        self._closed = False

    @property
    def topics(self) -> Topics:
        return self._topics

    @property
    def source(self) -> str:
        return self._source

    @property
    def closed(self) -> bool:
        return self._closed

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def emit(self, event: Event) -> None:
        ce_type = event_type(event)
        topic = topic_for(ce_type, self._topics)
        if self._closed:
            raise EventDeliveryError(
                f"cannot emit {ce_type}: the event bus is closed",
                details={"event_id": event.event_id, "event_type": ce_type, "topic": topic},
                retriable=False,
            )
        encoded = encode(event, source=self._source)
        self.publish(topic, key=encoded.key, value=encoded.value, headers=encoded.headers)

    def publish(
        self,
        topic: str,
        *,
        key: bytes | None,
        value: bytes,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> BusRecord:
        """Append a raw record (a dead letter, a test's record) and deliver it to readers."""
        log_ = self._log(topic)
        if self._closed:
            raise EventDeliveryError(
                f"cannot publish to {topic}: the event bus is closed",
                details={"topic": topic},
                retriable=False,
            )
        record = log_.append(next(self._sequence), key, value, tuple(headers))
        for subscription in list(self._subscribers[topic]):
            if not subscription.offer(record):
                # Never wait for a reader: one slow subscriber must not stall emit.
                self._unsubscribe(subscription)
                subscription.end("dropped")
                log.warning(
                    "dropped a subscriber of %s that fell more than %d records behind (at %s@%d)",
                    ", ".join(sorted(subscription.topics)),
                    self._queue_size,
                    topic,
                    record.offset,
                )
        self._groups.notify(topic)
        return record

    async def publish_record(
        self,
        topic: str,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        """`infra.feeds.RecordPublisher`: `publish`, awaitable; a tombstone's value becomes b""."""
        self.publish(topic, key=key, value=value if value is not None else b"", headers=headers)

    async def check(self) -> None:
        if self._closed:
            raise ServiceUnavailable("the event bus is closed", retriable=False)

    def subscribe(
        self, *topic_names: str, from_beginning: bool = True, queue_size: int | None = None
    ) -> Subscription:
        """Read `topic_names`: what is retained first when `from_beginning`, then live records.

        `queue_size` (default: the bus's) bounds the live records held unread.
        """
        if not topic_names:
            raise ValueError("subscribe to at least one topic")
        for name in topic_names:
            self._log(name)
        if self._closed:
            raise ServiceUnavailable("the event bus is closed", retriable=False)
        names = frozenset(topic_names)
        backlog: Iterator[BusRecord] = iter(())
        if from_beginning:
            merged = heapq.merge(
                *(list(self._logs[name].retained()) for name in sorted(names)),
                key=lambda entry: entry[0],
            )
            backlog = (record for _, record in merged)
        subscription = Subscription(
            names, backlog, queue_size or self._queue_size, self._unsubscribe
        )
        for name in names:
            self._subscribers[name].append(subscription)
        return subscription

    def group_consumer(
        self, group_id: str, *topic_names: str, listener: RebalanceListener | None = None
    ) -> BusGroupConsumer:
        """A member of consumer group `group_id` reading `topic_names`; it joins on `start`."""
        for name in topic_names:
            self._log(name)
        return BusGroupConsumer(self._groups, group_id, frozenset(topic_names), listener)

    def records(self, topic: str) -> list[BusRecord]:
        """What the topic retains now, in offset order (for the dev dashboard and tests)."""
        return [record for _, record in self._log(topic).retained()]

    def read(self, topic: str, from_offset: int, limit: int) -> list[BusRecord]:
        """Up to `limit` retained records of `topic` at or after `from_offset`, in offset order."""
        return self._log(topic).read(from_offset, limit)

    def end_offset(self, topic: str) -> int:
        """The offset the next record of `topic` will get."""
        return self._log(topic).next_offset

    def start_offset(self, topic: str) -> int:
        """The oldest offset of `topic` a reader can start from without having lost a record."""
        return self._log(topic).start_offset

    def subscriber_count(self, topic: str) -> int:
        return len(self._subscribers[self._name(topic)])

    def close(self) -> None:
        """End every subscription and group member; later emits fail. Safe to call twice."""
        self._closed = True
        for subscribers in self._subscribers.values():
            for subscription in list(subscribers):
                subscription.end("closed")
            subscribers.clear()
        self._groups.close()

    def _unsubscribe(self, subscription: Subscription) -> None:
        for name in subscription.topics:
            subscribers = self._subscribers[name]
            if subscription in subscribers:
                subscribers.remove(subscription)

    def _log(self, topic: str) -> TopicLog:
        return self._logs[self._name(topic)]

    def _name(self, topic: str) -> str:
        if topic not in self._logs:
            raise ValueError(
                f"{topic!r} is not a topic of this bus (prefix {self._topics.prefix!r})"
            )
        return topic

    def __repr__(self) -> str:
        sizes: dict[str, Any] = {name: len(log_) for name, log_ in self._logs.items()}
        return f"<InProcessEventBus {self._source} {sizes}>"


if TYPE_CHECKING:

    def _publishes(bus: InProcessEventBus) -> RecordPublisher:
        return bus
