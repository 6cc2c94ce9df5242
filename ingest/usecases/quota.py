"""The quota view: a user's status from their latest published snapshot, whatever the feed.

`QuotaSnapshots` keeps the latest `QuotaUpdated` per user, one record at a
time: it is the handler of a topic reader of the quota topic (Kafka's or the
in-process bus's, `infra.feeds.TopicReader`), which the composition root
starts and stops. `SnapshotQuotaView` answers `QuotaView` from the snapshots
and reports the reader's health: composed, never subclassed.

How it fails: records that are not valid events are logged and skipped, and
event types it does not know are skipped; a tombstone forgets its user.
`check` raises ServiceUnavailable while the reader is failing, not running,
or has not caught up with what the topic held when it started.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from infra.feeds import Record, TopicReader, where
from ingest.errors import ServiceUnavailable
from ingest.ports import QuotaStatus
from schemas import InvalidEvent, QuotaUpdated, decode
from schemas.periods import current_period, rfc3339

log = logging.getLogger(__name__)


def quota_status(
    user_id: str,
    snapshot: QuotaUpdated | None,
    *,
    now: datetime,
    period_days: int,
    quota_bytes: int,
    quota_uploads: int,
) -> QuotaStatus:
    """A snapshot of the current period is the answer; without one the current period
    starts empty, with an older snapshot's limits when there is one (an admin may have
    set them), else the defaults."""
    if snapshot is not None and snapshot.period_end > now:
        return QuotaStatus(
            user_id=user_id,
            bytes_limit=snapshot.bytes_limit,
            bytes_used=snapshot.bytes_used,
            uploads_limit=snapshot.uploads_limit,
            uploads_used=snapshot.uploads_used,
            period_start=rfc3339(snapshot.period_start),
            period_end=rfc3339(snapshot.period_end),
        )
    start, end = current_period(now, period_days)
    return QuotaStatus(
        user_id=user_id,
        bytes_limit=snapshot.bytes_limit if snapshot else quota_bytes,
        bytes_used=0,
        uploads_limit=snapshot.uploads_limit if snapshot else quota_uploads,
        uploads_used=0,
        period_start=rfc3339(start),
        period_end=rfc3339(end),
    )


def utc_now() -> datetime:
    return datetime.now(UTC)


class QuotaSnapshots:
    """The latest snapshot of every user read so far: the last one by offset, as compaction
    keeps it. `apply` is a `RecordHandler`."""

    def __init__(self) -> None:
        self._snapshots: dict[str, QuotaUpdated] = {}
        # Built once per snapshot: `counts` is asked on every quota check of the user.
        self._counted: dict[str, frozenset[str]] = {}

    def apply(self, record: Record) -> None:
        if record.value is None:
            # A tombstone: compaction will forget this user, and so do we.
            if record.key is not None:
                user_id = record.key.decode("utf-8", errors="replace")
                self._snapshots.pop(user_id, None)
                self._counted.pop(user_id, None)
            return
        try:
            event = decode(record.value, record.headers)
        except InvalidEvent as error:
            log.warning("skipping an invalid record at %s: %s", where(record), error)
            return
        if isinstance(event, QuotaUpdated):
            self._snapshots[event.user_id] = event
            self._counted[event.user_id] = frozenset(c.upload_id for c in event.counted_uploads)

    def get(self, user_id: str) -> QuotaUpdated | None:
        return self._snapshots.get(user_id)

    def counted(self, user_id: str) -> frozenset[str]:
        """The uploads the user's latest snapshot lists as charged."""
        return self._counted.get(user_id, frozenset())

    def __len__(self) -> int:
        return len(self._snapshots)


class SnapshotQuotaView:
    """`QuotaView` from the snapshots a topic reader feeds, healthy while that reader is."""

    def __init__(
        self,
        snapshots: QuotaSnapshots,
        feed: TopicReader,
        *,
        quota_bytes: int,
        quota_uploads: int,
        period_days: int,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        if period_days < 1:
            raise ValueError("a quota period lasts at least one day")
        self._snapshots = snapshots
        self._feed = feed
        self._quota_bytes = quota_bytes
        self._quota_uploads = quota_uploads
        self._period_days = period_days
        self._clock = clock

    async def check(self) -> None:
        """ServiceUnavailable unless the feed is reading and has caught up."""
        topic = self._feed.topic
        if not self._feed.healthy:
            raise ServiceUnavailable(
                f"the quota view of {topic!r} is failing: {self._feed.last_error or 'not running'}",
                details={"topic": topic},
            )
        if not self._feed.ready.is_set():
            raise ServiceUnavailable(
                f"the quota view has not caught up with {topic!r} yet",
                details={"topic": topic},
            )

    def counts(self, user_id: str, upload_id: str) -> bool:
        snapshot = self._snapshots.get(user_id)
        if snapshot is None or snapshot.period_end <= self._clock():
            return False
        return upload_id in self._snapshots.counted(user_id)

    def status(self, user_id: str) -> QuotaStatus:
        return quota_status(
            user_id,
            self._snapshots.get(user_id),
            now=self._clock(),
            period_days=self._period_days,
            quota_bytes=self._quota_bytes,
            quota_uploads=self._quota_uploads,
        )
