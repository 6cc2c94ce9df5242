"""The quota view of `ingest dev`: the snapshots a reader of the bus's quota topic hands over.

What every topic reader does is in tests/contract/test_topic_reader.py; here,
what only the bus reader does (read again after the bus drops it, end when the
bus closes) and the view composed over it.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from infra.bus import BusTopicReader, InProcessEventBus
from infra.env import GiB
from ingest.errors import ServiceUnavailable
from ingest.usecases.quota import QuotaSnapshots, SnapshotQuotaView
from schemas import QuotaUpdated, Topics

SOURCE = "/ingest/unit"
NOW = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)


def quota_snapshot(user_id: str, *, period_start: datetime = NOW, **fields: int) -> QuotaUpdated:
    return QuotaUpdated(
        user_id=user_id,
        period_start=period_start,
        period_end=period_start + timedelta(days=30),
        bytes_used=fields.get("bytes_used", GiB),
        bytes_limit=fields.get("bytes_limit", 20 * GiB),
        uploads_used=fields.get("uploads_used", 1),
        uploads_limit=fields.get("uploads_limit", 50),
        updated_at=period_start,
    )


def view_over(snapshots: QuotaSnapshots, reader: BusTopicReader) -> SnapshotQuotaView:
    return SnapshotQuotaView(
        snapshots,
        reader,
        quota_bytes=10 * GiB,
        quota_uploads=100,
        period_days=30,
        clock=lambda: NOW,
    )


def bus_view(
    bus: InProcessEventBus, *, ready_timeout: float = 5.0
) -> tuple[BusTopicReader, SnapshotQuotaView]:
    snapshots = QuotaSnapshots()
    reader = BusTopicReader(bus, bus.topics.quota, snapshots.apply, ready_timeout=ready_timeout)
    return reader, view_over(snapshots, reader)


async def test_the_view_serves_the_latest_snapshot_published_before_and_after_start() -> None:
    bus = InProcessEventBus(Topics(), source=SOURCE)
    await bus.emit(quota_snapshot("early", uploads_used=3))
    reader, view = bus_view(bus)
    with pytest.raises(ServiceUnavailable):
        await view.check()
    async with reader:
        await view.check()
        assert view.status("early").uploads_used == 3
        await bus.emit(quota_snapshot("late", bytes_used=7))
        await asyncio.sleep(0)
        assert view.status("late").bytes_used == 7
        assert view.status("nobody").bytes_limit == 10 * GiB
    with pytest.raises(ServiceUnavailable):
        await view.check()


async def test_the_view_answers_like_one_handed_the_records_directly() -> None:
    # The Kafka reader hands each record straight to the snapshots: the same answers.
    bus = InProcessEventBus(Topics(), source=SOURCE)
    direct = QuotaSnapshots()
    direct_view = view_over(direct, BusTopicReader(bus, bus.topics.quota, direct.apply))
    snapshots = [
        quota_snapshot("current", period_start=NOW - timedelta(days=1), uploads_used=4),
        quota_snapshot("ended", period_start=NOW - timedelta(days=40), bytes_limit=GiB),
    ]
    for snapshot in snapshots:
        await bus.emit(snapshot)
        direct.apply(bus.records(bus.topics.quota)[-1])
    reader, view = bus_view(bus)
    async with reader:
        for user in ["current", "ended", "nobody"]:
            assert view.status(user) == direct_view.status(user)


async def test_bad_records_are_skipped_and_a_dropped_view_reads_again() -> None:
    bus = InProcessEventBus(Topics(), source=SOURCE, queue_size=1)
    reader, view = bus_view(bus)
    async with reader:
        bus.publish(
            bus.topics.quota, key=b"u", value=b"{", headers=[("ce_type", b"ingest.quota.updated")]
        )
        bus.publish(
            bus.topics.quota, key=b"u", value=b"{}", headers=[("ce_type", b"ingest.quota.v9")]
        )
        # Published without yielding: the view falls behind and is dropped.
        for used in range(1, 6):
            await bus.emit(quota_snapshot("u", uploads_used=used))
        async with asyncio.timeout(5):
            while not (reader.healthy and view.status("u").uploads_used == 5):
                await asyncio.sleep(0.01)
        await view.check()
    bus.close()


async def test_the_view_is_unhealthy_once_the_bus_closes() -> None:
    bus = InProcessEventBus(Topics(), source=SOURCE)
    reader, view = bus_view(bus)
    async with reader:
        bus.close()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        with pytest.raises(ServiceUnavailable, match="closed"):
            await view.check()


async def test_a_view_started_on_a_closed_bus_does_not_wait_its_timeout() -> None:
    bus = InProcessEventBus(Topics(), source=SOURCE)
    bus.close()
    reader, view = bus_view(bus, ready_timeout=30)
    async with asyncio.timeout(2), reader:
        with pytest.raises(ServiceUnavailable):
            await view.check()
