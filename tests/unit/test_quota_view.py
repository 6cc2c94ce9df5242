"""The quota view's answers from the snapshots its feed handed over, and its health, without
a broker: records go straight to the snapshot holder, as any topic reader would hand them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from infra.bus import BusTopicReader, InProcessEventBus
from infra.env import GiB
from infra.feeds import TopicReader
from infra.kafka.reader import KafkaTopicReader
from ingest.errors import ServiceUnavailable
from ingest.ports import QuotaStatus
from ingest.usecases.quota import QuotaSnapshots, SnapshotQuotaView
from schemas import QuotaUpdated, Topics, encode
from schemas.periods import current_period, rfc3339
from tests.fakes import StaticFeed

NOW = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)


@dataclass
class Record:
    """The fields of an aiokafka ConsumerRecord the snapshot holder reads."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    topic: str = "ingest.quota"
    partition: int = 0
    offset: int = 0
    timestamp: int = 0


class View:
    """A view, the snapshots it answers from, and the feed whose health it reports."""

    def __init__(self, feed: TopicReader | None = None, now: datetime = NOW) -> None:
        self.snapshots = QuotaSnapshots()
        self.feed = feed if feed is not None else StaticFeed()
        self.view = SnapshotQuotaView(
            self.snapshots,
            self.feed,
            quota_bytes=10 * GiB,
            quota_uploads=100,
            period_days=30,
            clock=lambda: now,
        )

    def _apply(self, record: Record) -> None:
        self.snapshots.apply(record)

    def status(self, user_id: str) -> QuotaStatus:
        return self.view.status(user_id)


def make_view(now: datetime = NOW) -> View:
    return View(now=now)


def snapshot_record(user_id: str, *, period_start: datetime, **fields: int) -> Record:
    event = QuotaUpdated(
        user_id=user_id,
        period_start=period_start,
        period_end=period_start + timedelta(days=30),
        bytes_used=fields.get("bytes_used", GiB),
        bytes_limit=fields.get("bytes_limit", 20 * GiB),
        uploads_used=fields.get("uploads_used", 1),
        uploads_limit=fields.get("uploads_limit", 50),
        updated_at=period_start,
    )
    encoded = encode(event, source="/test")
    return Record(key=encoded.key, value=encoded.value, headers=encoded.headers)


def test_periods_are_fixed_slices_counted_from_the_epoch() -> None:
    start, end = current_period(NOW, 30)
    assert start == datetime(2024, 4, 17, tzinfo=UTC)
    assert end - start == timedelta(days=30)
    assert start <= NOW < end
    assert current_period(end, 30) == (end, end + timedelta(days=30))
    assert current_period(end - timedelta(microseconds=1), 30) == (start, end)
    assert current_period(NOW, 1) == (
        datetime(2024, 5, 6, tzinfo=UTC),
        datetime(2024, 5, 7, tzinfo=UTC),
    )
    with pytest.raises(ValueError, match="at least one day"):
        current_period(NOW, 0)


def test_timestamps_are_rfc3339_utc_with_z() -> None:
    assert rfc3339(datetime(2024, 4, 13, tzinfo=UTC)) == "2024-04-13T00:00:00Z"
    assert rfc3339(datetime(2024, 4, 13, 2, tzinfo=UTC) + timedelta(microseconds=5)) == (
        "2024-04-13T02:00:00.000005Z"
    )


def test_an_unknown_user_gets_the_defaults_of_the_current_period() -> None:
    status = make_view().status("nobody")
    assert (status.bytes_limit, status.bytes_used) == (10 * GiB, 0)
    assert (status.uploads_limit, status.uploads_used) == (100, 0)
    assert (status.period_start, status.period_end) == (
        "2024-04-17T00:00:00Z",
        "2024-05-17T00:00:00Z",
    )


def test_the_latest_snapshot_of_a_user_is_served() -> None:
    view = make_view()
    period_start = datetime(2024, 5, 1, tzinfo=UTC)
    view._apply(snapshot_record("u", period_start=period_start, uploads_used=1))
    view._apply(snapshot_record("u", period_start=period_start, uploads_used=2, bytes_used=5))
    status = view.status("u")
    assert (status.uploads_used, status.bytes_used) == (2, 5)
    assert (status.uploads_limit, status.bytes_limit) == (50, 20 * GiB)
    assert status.period_start == "2024-05-01T00:00:00Z"
    assert status.period_end == "2024-05-31T00:00:00Z"


def test_usage_of_an_ended_period_is_not_counted_but_its_limits_stay() -> None:
    view = make_view()
    view._apply(
        snapshot_record("u", period_start=datetime(2024, 1, 1, tzinfo=UTC), uploads_used=50)
    )
    status = view.status("u")
    assert (status.uploads_used, status.bytes_used) == (0, 0)
    assert (status.uploads_limit, status.bytes_limit) == (50, 20 * GiB)
    assert status.period_start == "2024-04-17T00:00:00Z"


def test_a_tombstone_forgets_the_user_and_bad_records_are_skipped() -> None:
    view = make_view()
    view._apply(snapshot_record("u", period_start=datetime(2024, 5, 1, tzinfo=UTC)))
    view._apply(Record(key=b"u", value=b"{", headers=[("ce_type", b"ingest.quota.updated")]))
    view._apply(Record(key=b"u", value=b"{}", headers=[("ce_type", b"ingest.quota.v9")]))
    assert view.status("u").uploads_limit == 50
    view._apply(Record(key=b"u", value=None))
    assert view.status("u").uploads_limit == 100


@pytest.mark.parametrize("reader_kind", ["kafka", "bus"])
async def test_a_new_view_is_neither_ready_nor_healthy(reader_kind: str) -> None:
    snapshots = QuotaSnapshots()
    reader: KafkaTopicReader | BusTopicReader = (
        KafkaTopicReader("127.0.0.1:1", Topics().quota, snapshots.apply)
        if reader_kind == "kafka"
        else BusTopicReader(
            InProcessEventBus(Topics(), source="/test"), Topics().quota, snapshots.apply
        )
    )
    assert not reader.ready.is_set()
    assert not reader.healthy
    view = SnapshotQuotaView(snapshots, reader, quota_bytes=1, quota_uploads=1, period_days=30)
    with pytest.raises(ServiceUnavailable, match="not running"):
        await view.check()


async def test_check_tells_a_failing_feed_from_one_still_catching_up() -> None:
    feed = StaticFeed(topic="ingest.quota", healthy=True)
    view = View(feed).view
    with pytest.raises(ServiceUnavailable, match=r"not caught up with 'ingest\.quota'"):
        await view.check()
    feed.ready.set()
    await view.check()
    feed.healthy, feed.last_error = False, "KafkaConnectionError: no broker"
    with pytest.raises(ServiceUnavailable, match="failing: KafkaConnectionError: no broker"):
        await view.check()


def test_a_quota_period_lasts_at_least_a_day() -> None:
    with pytest.raises(ValueError, match="at least one day"):
        SnapshotQuotaView(
            QuotaSnapshots(), StaticFeed(), quota_bytes=1, quota_uploads=1, period_days=0
        )
