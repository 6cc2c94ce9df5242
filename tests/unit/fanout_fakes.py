"""Hand-written fakes for the live service's units: a socket, records, readers."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import msgspec

from consumers.fanout.client import Client, Scope
from consumers.fanout.hub import Hub
from consumers.fanout.metrics import FanoutMetrics
from consumers.fanout.progress import ProgressBoard
from infra.errors import RecordsExpired
from infra.feeds import OffsetRange, RecordHandler, TopicPartition, hand_over
from infra.tokens import Principal
from schemas import Event, encode
from tests.samples import AnyUploadEvent, upload_sample

TOPICS = ("t.uploads", "t.progress", "t.detections", "t.quota")


@dataclass
class FakeConnection:
    """Records what is sent; `stalled` makes every send wait (a peer whose window is shut)."""

    sent: list[str] = field(default_factory=list)
    closed: tuple[int, bytes] | None = None
    aborted: bool = False
    stalled: bool = False
    _release: asyncio.Event = field(default_factory=asyncio.Event)

    async def send_str(self, data: str) -> None:
        if self.stalled:
            await self._release.wait()
        self.sent.append(data)

    async def close(self, *, code: int, message: bytes) -> bool:
        if self.stalled:
            await self._release.wait()
        self.closed = (code, message)
        return True

    def abort(self) -> None:
        self.aborted = True

    def messages(self) -> list[dict[str, object]]:
        return [msgspec.json.decode(text) for text in self.sent]


@dataclass(frozen=True)
class FakeRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]
    timestamp: int = 0


def record(event: Event, topic: str, partition: int, offset: int, timestamp: int = 0) -> FakeRecord:
    encoded = encode(event, source="/tests")
    return FakeRecord(
        topic, partition, offset, encoded.key, encoded.value, encoded.headers, timestamp
    )


def upload_event(kind: str, user: str, upload: str, sequence: int) -> AnyUploadEvent:
    event = upload_sample(f"ingest.upload.{kind}")
    return msgspec.structs.replace(event, user_id=user, upload_id=upload, sequence=sequence)


@dataclass
class FakeReader:
    """Where a reader stands, set by hand."""

    at: dict[TopicPartition, int] = field(default_factory=dict)

    def positions(self) -> Mapping[TopicPartition, int]:
        return self.at


@dataclass
class FakeRanges:
    """A RangeReader over records held per partition; partitions start at `oldest`."""

    records: dict[TopicPartition, list[FakeRecord]] = field(default_factory=dict)
    oldest: dict[TopicPartition, int] = field(default_factory=dict)
    reads: list[dict[TopicPartition, OffsetRange]] = field(default_factory=list)

    def add(self, rec: FakeRecord) -> None:
        self.records.setdefault(TopicPartition(rec.topic, rec.partition), []).append(rec)

    async def read(
        self, ranges: Mapping[TopicPartition, OffsetRange], handler: RecordHandler
    ) -> None:
        self.reads.append(dict(ranges))
        if any(r.start < self.oldest.get(tp, 0) for tp, r in ranges.items() if r.end > r.start):
            raise RecordsExpired("gone")
        for tp, wanted in ranges.items():
            for rec in self.records.get(tp, []):
                if wanted.start <= rec.offset < wanted.end:
                    hand_over(handler, rec)

    async def close(self) -> None:
        pass


def hub(*, max_per_user: int = 5, max_total: int = 1000) -> Hub:
    return Hub(
        TOPICS,
        max_per_user=max_per_user,
        max_total=max_total,
        board=ProgressBoard(),
        metrics=FanoutMetrics(),
    )


def client(
    user: str,
    *,
    admin: bool = False,
    see_all: bool = False,
    sessions: set[str] | None = None,
    queue_size: int = 16,
    connection: FakeConnection | None = None,
    close_timeout: float = 0.05,
) -> tuple[Client, FakeConnection]:
    connection = connection or FakeConnection()
    roles = frozenset({"admin"}) if admin else frozenset()
    made = Client(
        connection,
        Scope(Principal(user, roles), see_all, sessions or set()),
        queue_size=queue_size,
        close_timeout=close_timeout,
    )
    return made, connection


async def settle() -> None:
    """Let writer tasks run until they are idle."""
    for _ in range(20):
        await asyncio.sleep(0)
