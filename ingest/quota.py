"""A user's quota status from their latest published snapshot: one rule for every quota view."""

from __future__ import annotations

from datetime import datetime

from ingest.ports import QuotaStatus
from schemas import QuotaUpdated
from schemas.periods import current_period, rfc3339


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
