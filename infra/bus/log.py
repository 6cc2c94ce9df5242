"""The retained records of one topic of the in-process bus: a bounded, offset-ordered log.

A topic is one partition here. Offsets count from 0 and are never reused. A
compacted topic keeps the latest record of each key (of at most `retention`
keys, the oldest key forgotten first); any other topic keeps its last
`retention` records. `start_offset` is where a reader may still start without
having missed anything: records compaction replaced by a later one with the
same key leave gaps, as in Kafka, and are not a loss; records pushed out by
the bound are.

How it fails: it does not; reading from before `start_offset` is the
caller's to detect (the group consumers raise RecordsExpired).
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict, deque
from collections.abc import Iterable
from typing import NamedTuple


class BusRecord(NamedTuple):
    """One record of a topic, shaped like the fields of an aiokafka ConsumerRecord."""

    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    offset: int
    timestamp: int = 0
    """When it was appended, Unix milliseconds."""

    @property
    def partition(self) -> int:
        """Always 0: a topic of the in-process bus is a single partition."""
        return 0


class TopicLog:
    """The retained records of one topic, in offset order, each with its bus-wide sequence."""

    def __init__(self, topic: str, *, compacted: bool, retention: int) -> None:
        self.topic = topic
        self.compacted = compacted
        self._retention = retention
        self._next_offset = 0
        self._records: deque[tuple[int, BusRecord]] = deque(maxlen=retention)
        self._latest: OrderedDict[bytes | None, tuple[int, BusRecord]] = OrderedDict()
        # Compacted: one past the newest record forgotten with its key, which nobody can read now.
        self._forgotten_before = 0

    @property
    def next_offset(self) -> int:
        return self._next_offset

    @property
    def start_offset(self) -> int:
        """The oldest offset a reader can start from without having lost a record."""
        if self.compacted:
            return self._forgotten_before
        return self._next_offset - len(self._records)

    def append(
        self,
        sequence: int,
        key: bytes | None,
        value: bytes,
        headers: tuple[tuple[str, bytes], ...],
    ) -> BusRecord:
        record = BusRecord(
            self.topic, key, value, headers, self._next_offset, int(time.time() * 1000)
        )
        self._next_offset += 1
        if self.compacted:
            # Moving the key to the end keeps the survivors in offset order.
            self._latest.pop(key, None)
            self._latest[key] = (sequence, record)
            if len(self._latest) > self._retention:
                _, (_, forgotten) = self._latest.popitem(last=False)
                self._forgotten_before = forgotten.offset + 1
        else:
            self._records.append((sequence, record))
        return record

    def retained(self) -> Iterable[tuple[int, BusRecord]]:
        return self._latest.values() if self.compacted else self._records

    def read(self, from_offset: int, limit: int) -> list[BusRecord]:
        """Up to `limit` retained records at or after `from_offset`, in offset order."""
        if self.compacted:
            # Readers are mostly near the end: walk back from there.
            newer: list[BusRecord] = []
            for _, record in reversed(self._latest.values()):
                if record.offset < from_offset:
                    break
                newer.append(record)
            newer.reverse()
            return newer[:limit]
        index = max(0, from_offset - self.start_offset)
        count = len(self._records)
        if index >= count:
            return []
        if index <= count // 2:
            entries = list(itertools.islice(self._records, index, index + limit))
        else:
            entries = list(itertools.islice(reversed(self._records), count - index))
            entries.reverse()
            del entries[limit:]
        return [record for _, record in entries]

    def __len__(self) -> int:
        return len(self._latest) if self.compacted else len(self._records)
