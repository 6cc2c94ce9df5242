"""Quota periods, computed the same way by every process that counts quota.

Periods are `period_days`-day slices counted from 1970-01-01 00:00 UTC, so an
ingest instance answering a 429 and the quota consumer keeping the ledger agree
on which period a moment belongs to without talking to each other.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

PERIOD_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def current_period(now: datetime, period_days: int) -> tuple[datetime, datetime]:
    """Start and end of the quota period holding `now`."""
    if period_days < 1:
        raise ValueError("a quota period lasts at least one day")
    length = timedelta(days=period_days)
    start = PERIOD_EPOCH + ((now - PERIOD_EPOCH) // length) * length
    return start, start + length


def rfc3339(moment: datetime) -> str:
    """UTC, with a `Z`, the way the events encode their timestamps."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
