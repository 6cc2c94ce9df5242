"""An in-process event bus: the event sink of `ingest dev` and of tests, readable like Kafka.

`emit` encodes each event exactly as the Kafka sink does (`schemas.encode`:
the same key, value and CloudEvents headers, routed by `schemas.topic_for`)
and appends the record to its topic's log. Each log is bounded: a topic
configured for compaction (`cleanup.policy` with `compact` in its spec) keeps
the latest record per key (of at most `retention` keys), as Kafka compaction
would, so a late reader of the quota topic still finds every user's snapshot;
the others keep their last `retention` records. There are no tombstones: a
record always has a value. Offsets count from 0 per topic and are never
reused. One topic is one partition here, so every reader sees one topic's
records in emit order (Kafka only promises that per key).

`subscribe` returns a `Subscription`: an async iterator of `BusRecord`s
(`topic, key, value, headers, offset`, plus `partition` 0 like an aiokafka
ConsumerRecord), decoded by the reader with `schemas.decode`. From the beginning
(Kafka's `earliest`) it first yields what the logs retain, then live records.

For one event loop in one process: call everything from the loop's thread.

How it fails: `emit` and `publish` never wait for subscribers. Each
subscription holds at most `queue_size` live records not yet read; a subscriber
further behind is dropped with a logged warning, and its iterator raises
SubscriberDropped once it has yielded what it was holding (resubscribe to
read on, from the beginning if it must not miss anything). `emit` after `close`
raises EventDeliveryError, and `check` ServiceUnavailable; `close` ends every
subscription at once (StopAsyncIteration), dropping what they held. An event
type without a topic raises KeyError, as in the Kafka sink; an unknown topic
name, ValueError.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any, Final, Literal, NamedTuple, Self

from infra.errors import EventDeliveryError, ServiceUnavailable
from schemas import Event, Topics, encode, event_type, topic_for

log = logging.getLogger(__name__)

DEFAULT_RETENTION: Final = 10_000
DEFAULT_QUEUE_SIZE: Final = 1_000


class BusRecord(NamedTuple):
    """One record of a topic, shaped like the fields of an aiokafka ConsumerRecord."""

    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    offset: int

    @property
    def partition(self) -> int:
        """Always 0: a topic of the in-process bus is a single partition."""
        return 0


class SubscriberDropped(ServiceUnavailable):
    """The subscription fell more than its queue size behind and was dropped by the bus."""


class _TopicLog:
    """The retained records of one topic, in offset order, each with its bus-wide sequence."""

    def __init__(self, *, compacted: bool, retention: int) -> None:
        self.compacted = compacted
        self._retention = retention
        self._next_offset = 0
        self._records: deque[tuple[int, BusRecord]] = deque(maxlen=retention)
        self._latest: OrderedDict[bytes | None, tuple[int, BusRecord]] = OrderedDict()

    @property
    def next_offset(self) -> int:
        return self._next_offset

    def append(
        self,
        sequence: int,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: tuple[tuple[str, bytes], ...],
    ) -> BusRecord:
        record = BusRecord(topic, key, value, headers, self._next_offset)
        self._next_offset += 1
        if self.compacted:
            # Moving the key to the end keeps the survivors in offset order.
            self._latest.pop(key, None)
            self._latest[key] = (sequence, record)
            if len(self._latest) > self._retention:
                self._latest.popitem(last=False)
        else:
            self._records.append((sequence, record))
        return record

    def retained(self) -> Iterable[tuple[int, BusRecord]]:
        return self._latest.values() if self.compacted else self._records

    def __len__(self) -> int:
        return len(self._latest) if self.compacted else len(self._records)


class Subscription:
    """Records of some topics, retained ones first, then live ones; see the module docstring."""

    def __init__(
        self,
        bus: InProcessEventBus,
        topics: frozenset[str],
        backlog: Iterable[BusRecord],
        queue_size: int,
    ) -> None:
        self._bus = bus
        self._topics = topics
        self._backlog = deque(backlog)
        self._live: deque[BusRecord] = deque()
        self._queue_size = queue_size
        self._wakeup = asyncio.Event()
        self._state: Literal["open", "closed", "dropped"] = "open"

    @property
    def topics(self) -> frozenset[str]:
        return self._topics

    @property
    def caught_up(self) -> bool:
        """True once every record retained when it subscribed has been yielded."""
        return not self._backlog

    @property
    def pending(self) -> int:
        """Records held and not yet yielded."""
        return len(self._backlog) + len(self._live)

    @property
    def dropped(self) -> bool:
        return self._state == "dropped"

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> BusRecord:
        while True:
            if self._state == "closed":
                raise StopAsyncIteration
            if self._backlog:
                return self._backlog.popleft()
            if self._live:
                return self._live.popleft()
            if self._state == "dropped":
                raise SubscriberDropped(
                    f"the subscription to {', '.join(sorted(self._topics))} fell more than "
                    f"{self._queue_size} records behind and was dropped",
                    details={"topics": sorted(self._topics)},
                )
            self._wakeup.clear()
            await self._wakeup.wait()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop receiving; the iterator ends at once. Safe to call twice."""
        if self._state == "open":
            self._bus._unsubscribe(self)
        self._end("closed")

    def _offer(self, record: BusRecord) -> bool:
        """Take a live record; False (and nothing taken) when the queue is full."""
        if len(self._live) >= self._queue_size:
            return False
        self._live.append(record)
        self._wakeup.set()
        return True

    def _end(self, state: Literal["closed", "dropped"]) -> None:
        if self._state == "closed":
            return
        self._state = state
        if state == "closed":
            self._backlog.clear()
            self._live.clear()
        self._wakeup.set()


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
            name: _TopicLog(
                compacted="compact" in spec.config.get("cleanup.policy", ""), retention=retention
            )
            for name, spec in topics.specs()
        }
        self._subscribers: dict[str, list[Subscription]] = {name: [] for name in self._logs}
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
        """Append a raw record (a dead letter, a test's record) and deliver it to subscribers."""
        log_ = self._log(topic)
        if self._closed:
            raise EventDeliveryError(
                f"cannot publish to {topic}: the event bus is closed",
                details={"topic": topic},
                retriable=False,
            )
        record = log_.append(next(self._sequence), topic, key, value, tuple(headers))
        for subscription in list(self._subscribers[topic]):
            if not subscription._offer(record):
                # Never wait for a reader: one slow subscriber must not stall emit.
                self._unsubscribe(subscription)
                subscription._end("dropped")
                log.warning(
                    "dropped a subscriber of %s that fell more than %d records behind (at %s@%d)",
                    ", ".join(sorted(subscription.topics)),
                    self._queue_size,
                    topic,
                    record.offset,
                )
        return record

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
        subscription = Subscription(self, names, backlog, queue_size or self._queue_size)
        for name in names:
            self._subscribers[name].append(subscription)
        return subscription

    def records(self, topic: str) -> list[BusRecord]:
        """What the topic retains now, in offset order (for the dev dashboard and tests)."""
        return [record for _, record in self._log(topic).retained()]

    def end_offset(self, topic: str) -> int:
        """The offset the next record of `topic` will get."""
        return self._log(topic).next_offset

    def subscriber_count(self, topic: str) -> int:
        return len(self._subscribers[self._name(topic)])

    def close(self) -> None:
        """End every subscription; later emits fail. Safe to call twice."""
        self._closed = True
        for subscribers in self._subscribers.values():
            for subscription in list(subscribers):
                subscription._end("closed")
            subscribers.clear()

    def _unsubscribe(self, subscription: Subscription) -> None:
        for name in subscription.topics:
            subscribers = self._subscribers[name]
            if subscription in subscribers:
                subscribers.remove(subscription)

    def _log(self, topic: str) -> _TopicLog:
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
