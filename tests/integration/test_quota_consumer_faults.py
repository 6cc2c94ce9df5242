"""The quota consumer as real processes under faults: exactly-once effect on the real Kafka.

Each test runs `ingest consume quota` processes (tests/integration/quota_processes.py)
on the module's topics, publishes completed uploads while they run and breaks
something: the same event delivered twice, a burst, SIGKILL between producing
snapshots and committing, SIGTERM and a restart, two members rebalancing.
At the end the latest snapshot of every user is exactly the sum of that
user's distinct non-duplicate uploads, and no snapshot on the way ever
charged more. The processes share the group `quota` and the module's topics,
so each test starts where the previous one committed, with users of its own.
"""

from __future__ import annotations

import random
import signal
import uuid
from collections.abc import AsyncIterator

import pytest

from infra.kafka.sink import KafkaEventSink
from ingest.settings import IngestSettings
from schemas import Topics, UploadCompleted
from tests.integration.quota_processes import (
    Published,
    committed_and_ends,
    quota_process,
    settled,
    uploads_partitions,
)
from tests.quota_support import completed

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def published(settings: IngestSettings) -> AsyncIterator[Published]:
    async with KafkaEventSink(
        settings.kafka_bootstrap_servers,
        Topics(settings.topic_prefix),
        source="/test/quota-faults",
        timeout=10,
    ) as sink:
        yield Published(sink)


class Uploads:
    """New completed uploads of a few users of this test only."""

    def __init__(self, users: int) -> None:
        tag = uuid.uuid4().hex[:6]
        self.users = [f"user-{tag}-{n}" for n in range(users)]
        self.count = 0
        self.sizes = random.Random(tag)

    def batch(self, n: int) -> list[UploadCompleted]:
        events = []
        for _ in range(n):
            self.count += 1
            user = self.users[self.count % len(self.users)]
            size = self.sizes.randint(1, 1 << 30)
            events.append(completed(f"up-{user}-{self.count}", size, user_id=user))
        return events


async def test_duplicate_deliveries_and_a_burst_are_counted_once(
    settings: IngestSettings, published: Published
) -> None:
    uploads = Uploads(users=5)
    first = uploads.batch(20)
    async with quota_process(settings) as consumer:
        await published.emit(*first)
        # The same event again at a later offset (same ce_id), a re-publication of an upload
        # under a new ce_id, and a completion that stored nothing new.
        await published.emit(*first[:10])
        again = completed(first[10].upload_id, first[10].size_bytes, user_id=first[10].user_id)
        dup = completed("up-dup", 777, user_id=first[0].user_id, duplicate_of=first[0].upload_id)
        await published.emit(again, dup)
        await published.emit(*uploads.batch(200))  # a burst while it runs
        latest = await settled(settings, published)
        assert sum(s.uploads_used for s in latest.values()) == 220
        consumer.signal(signal.SIGTERM)
        assert await consumer.exited() == 0, consumer.tail


async def test_sigkill_after_the_snapshots_and_before_the_commit_counts_nothing_twice(
    settings: IngestSettings, published: Published
) -> None:
    uploads = Uploads(users=4)
    # A commit interval longer than the test: the kill lands before anything is committed.
    async with quota_process(settings, commit_interval="60s") as doomed:
        await published.emit(*uploads.batch(40))
        await settled(settings, published)
        before = await committed_and_ends(settings, uploads_partitions(settings))
        behind = [p for p, (done, end) in before.items() if (done or 0) < end]
        assert behind, "the snapshots are out, the offsets must not be committed yet"
        doomed.signal(signal.SIGKILL)
        assert await doomed.exited() == -signal.SIGKILL
        await published.emit(*uploads.batch(40))  # events go on flowing while it is down
    async with quota_process(settings) as restarted:
        await published.emit(*uploads.batch(40))
        latest = await settled(settings, published)
        assert sum(s.uploads_used for s in latest.values()) == 120
        # It read the records the killed process had applied again, and skipped them.
        redelivered = sum(end - (done or 0) for p, (done, end) in before.items() if p in behind)
        assert await restarted.handled() >= redelivered + 80
        restarted.signal(signal.SIGTERM)
        assert await restarted.exited() == 0, restarted.tail


async def test_sigterm_commits_and_a_restart_goes_on_from_there(
    settings: IngestSettings, published: Published
) -> None:
    uploads = Uploads(users=4)
    async with quota_process(settings, commit_interval="60s") as first:
        await published.emit(*uploads.batch(40))
        await settled(settings, published)
        first.signal(signal.SIGTERM)
        assert await first.exited() == 0, first.tail
    # The drain committed everything, however long the commit interval.
    after = await committed_and_ends(settings, uploads_partitions(settings))
    assert all(done == end for done, end in after.values() if end > 0), after
    async with quota_process(settings) as second:
        await published.emit(*uploads.batch(30))
        latest = await settled(settings, published)
        assert sum(s.uploads_used for s in latest.values()) == 70
        assert await second.handled() == 30  # nothing read twice after a clean stop
        second.signal(signal.SIGTERM)
        assert await second.exited() == 0, second.tail


async def test_two_members_rebalancing_while_events_flow_count_every_upload_once(
    settings: IngestSettings, published: Published
) -> None:
    uploads = Uploads(users=12)  # enough users to land on every partition
    async with quota_process(settings) as first:
        await published.emit(*uploads.batch(60))
        async with quota_process(settings) as second:
            await published.emit(*uploads.batch(60))
            first.signal(signal.SIGTERM)
            await published.emit(*uploads.batch(60))
            assert await first.exited() == 0, first.tail
            await published.emit(*uploads.batch(30))
            latest = await settled(settings, published)
            assert sum(s.uploads_used for s in latest.values()) == 210
            assert await second.handled() > 0
            second.signal(signal.SIGTERM)
            assert await second.exited() == 0, second.tail
