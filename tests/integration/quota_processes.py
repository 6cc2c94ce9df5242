"""Real `ingest consume quota` processes for fault tests, and what their snapshots must add up to.

`quota_process` starts the quota consumer as the command line runs it (its own
interpreter, `python -m cli.main consume quota`, from this checkout) on the
module's topics and a free metrics port, waits until it answers `/readyz`, and
always kills it on the way out. `Published` emits completed uploads and
remembers what every user must be charged; `settled` reads the real quota
topic until the latest snapshot of every user reflects all of it, and fails
when any snapshot on the way charged more than that (a double count) or does
not add up (`snapshot_problems`).

How it fails: AssertionError (with the consumer's stderr tail) when a process
exits early or does not become ready, TimeoutError when the snapshots do not
settle within the time limit.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
from aiokafka import AIOKafkaConsumer
from aiokafka import TopicPartition as KafkaPartition
from aiokafka.admin import AIOKafkaAdminClient

from consumers.quota import snapshot_problems
from deploy.stack.process import free_port
from infra.feeds import Record, TopicPartition
from infra.kafka.reader import KafkaTopicReader
from infra.kafka.sink import KafkaEventSink
from ingest.settings import IngestSettings
from schemas import TOPIC_SPECS, QuotaUpdated, Topics, UploadCompleted, decode
from tests.integration.cli_processes import cli_process

GROUP = "quota"


@dataclass
class QuotaProcess:
    process: asyncio.subprocess.Process
    port: int
    stderr: list[str] = field(default_factory=list)

    @property
    def tail(self) -> str:
        return "".join(self.stderr[-30:])

    def signal(self, number: int) -> None:
        if self.process.returncode is None:
            self.process.send_signal(number)

    async def exited(self, within: float = 30.0) -> int:
        async with asyncio.timeout(within):
            return await self.process.wait()

    async def handled(self) -> int:
        """How many records the runtime handled so far (from its /metrics)."""
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{self.port}/metrics") as answer,
        ):
            text = await answer.text()
        found = re.search(r'consumer_records_total\{[^}]*outcome="handled"[^}]*\} (\S+)', text)
        return int(float(found.group(1))) if found else 0


@asynccontextmanager
async def quota_process(
    settings: IngestSettings, *, commit_interval: str = "500ms", grace: str = "5s"
) -> AsyncIterator[QuotaProcess]:
    """`ingest consume quota` on the module's topics, ready; SIGKILLed on the way out if alive."""
    port = free_port()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "INGEST_TOPIC_PREFIX": settings.topic_prefix,
        "CONSUMER_METRICS_PORT": str(port),
        "CONSUMER_COMMIT_INTERVAL": commit_interval,
        "INGEST_SHUTDOWN_GRACE": grace,
        "INGEST_INSTANCE_ID": f"fault-test-{port}",
    }
    lines: list[str] = []
    async with cli_process(
        ("consume", "quota"), env=env, ready_url=f"http://127.0.0.1:{port}/readyz", stderr=lines
    ) as process:
        yield QuotaProcess(process, port, lines)


class Published:
    """Emits completions and keeps, per user, the distinct non-duplicate uploads they charge."""

    def __init__(self, sink: KafkaEventSink) -> None:
        self.sink = sink
        self.charged: dict[str, dict[str, int]] = {}

    async def emit(self, *events: UploadCompleted) -> None:
        """Concurrently: records of one user may land in any order, as from several instances."""
        await asyncio.gather(*(self.sink.emit(event) for event in events))
        for event in events:
            users = self.charged.setdefault(event.user_id, {})
            if event.duplicate_of is None:
                users[event.upload_id] = event.size_bytes

    def expected(self) -> dict[str, tuple[int, int]]:
        """User id -> (bytes, uploads) the latest snapshot must show."""
        return {user: (sum(ups.values()), len(ups)) for user, ups in self.charged.items()}


async def quota_snapshots(settings: IngestSettings) -> list[QuotaUpdated]:
    """Every snapshot on the quota topic now, in offset order per partition."""
    records: list[Record] = []
    topic = Topics(settings.topic_prefix).quota
    async with KafkaTopicReader(settings.kafka_bootstrap_servers, topic, records.append) as reader:
        await reader.ready.wait()
    snapshots = []
    for record in records:
        event = decode(record.value, record.headers) if record.value is not None else None
        if isinstance(event, QuotaUpdated):
            snapshots.append(event)
    return snapshots


async def settled(
    settings: IngestSettings, published: Published, *, within: float = 45.0
) -> dict[str, QuotaUpdated]:
    """The latest snapshot of each published user, once they reflect every upload; checked."""
    expected = published.expected()
    latest: dict[str, QuotaUpdated] = {}
    try:
        async with asyncio.timeout(within):
            while True:
                snapshots = [s for s in await quota_snapshots(settings) if s.user_id in expected]
                latest = {s.user_id: s for s in snapshots}
                if all(
                    user in latest and latest[user].uploads_used >= uploads
                    for user, (_, uploads) in expected.items()
                ):
                    break
                await asyncio.sleep(0.5)
    except TimeoutError:
        seen = {user: (s.bytes_used, s.uploads_used) for user, s in latest.items()}
        raise AssertionError(f"not settled within {within:g} s: {seen} vs {expected}") from None
    for snapshot in snapshots:
        assert snapshot_problems(snapshot) == [], snapshot.user_id
        limit = expected[snapshot.user_id]
        assert (snapshot.bytes_used, snapshot.uploads_used) <= limit, (
            f"{snapshot.user_id} charged {snapshot.bytes_used} bytes, "
            f"{snapshot.uploads_used} uploads; only {limit} were completed"
        )
    for user, (size, uploads) in expected.items():
        counted = {u.upload_id: u.size_bytes for u in latest[user].counted_uploads}
        assert counted == published.charged[user], user
        assert (latest[user].bytes_used, latest[user].uploads_used) == (size, uploads), user
    return latest


async def committed_and_ends(
    settings: IngestSettings, partitions: Iterable[TopicPartition]
) -> dict[TopicPartition, tuple[int | None, int]]:
    """Partition -> (what the quota group committed, its end), read without joining the group."""
    wanted = [KafkaPartition(p.topic, p.partition) for p in partitions]
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    reader = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    await reader.start()
    try:
        offsets = await admin.list_consumer_group_offsets(GROUP, partitions=wanted)
        ends = await reader.end_offsets(wanted)
    finally:
        await reader.stop()
        await admin.close()
    return {
        TopicPartition(p.topic, p.partition): (
            offsets[p].offset if p in offsets and offsets[p].offset >= 0 else None,
            ends[p],
        )
        for p in wanted
    }


def uploads_partitions(settings: IngestSettings) -> list[TopicPartition]:
    """Every partition of the module's uploads topic."""
    topic = Topics(settings.topic_prefix).uploads
    [spec] = [spec for spec in TOPIC_SPECS if spec.suffix == "uploads"]
    return [TopicPartition(topic, number) for number in range(spec.partitions)]
