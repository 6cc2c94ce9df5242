"""What a consumer gives the runtime: its topics, how many records of one partition it may
handle at once, and how to handle one decoded event.

The runtime (this package) owns everything else: one task per assigned
partition, decoding (event types it does not know are skipped with a log
line), committing only the contiguous prefix of finished offsets, retrying
errors whose `retriable` is true, dead-lettering the others, draining on
SIGTERM, health and lag metrics. A consumer is written against this Protocol
and runs the same on Kafka and on the in-process bus.

How it fails: `handle` raises. An `infra.errors.ServiceError` with
`retriable` true is retried with backoff (the partition waits; records after
it are not committed); any other exception sends the record to the dead-letter
topic with the error in its headers, and the partition goes on.
"""

from __future__ import annotations

from typing import Protocol

from infra.feeds import Record, TopicPartition
from schemas import Event


class ConsumerApp(Protocol):
    @property
    def name(self) -> str:
        """Names the consumer in logs and metrics; the default consumer group id."""
        ...

    @property
    def topics(self) -> frozenset[str]: ...

    @property
    def max_in_flight(self) -> int:
        """Records of one partition handled at once; 1 handles each partition in order."""
        ...

    async def on_assigned(self, partitions: frozenset[TopicPartition]) -> None:
        """Before any record of these partitions is handled (load state kept elsewhere)."""
        ...

    async def on_revoked(self, partitions: frozenset[TopicPartition]) -> None:
        """After the records of these partitions in flight were finished and committed."""
        ...

    async def handle(self, event: Event, record: Record) -> None:
        """Handle one event; the record is there for its key, offset and headers."""
        ...
