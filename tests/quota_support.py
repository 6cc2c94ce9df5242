"""Events the quota ledger counts, built in one line each, for the quota consumer's tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import msgspec

from consumers.quota import QuotaDefaults
from infra.env import GiB
from schemas import QuotaLimitsSet, UploadCompleted
from tests.samples import SAMPLES

# 2024-05-06 is inside the 30-day period 2024-04-13 .. 2024-05-13 counted from 1970-01-01.
NOW = datetime(2024, 5, 6, 12, 0, tzinfo=UTC)
DEFAULTS = QuotaDefaults(bytes_limit=10 * GiB, uploads_limit=100, period_days=30)


def _sample_completion() -> UploadCompleted:
    sample = SAMPLES["ingest.upload.completed"]
    assert isinstance(sample, UploadCompleted)
    return sample


_COMPLETED = _sample_completion()


def completed(
    upload_id: str,
    size_bytes: int,
    *,
    user_id: str = "alice",
    at: datetime = NOW,
    duplicate_of: str | None = None,
) -> UploadCompleted:
    """A completion of a new event id every call, as a re-published event would have."""
    return msgspec.structs.replace(
        _COMPLETED,
        event_id=uuid.uuid4().hex,
        occurred_at=at,
        completed_at=at,
        started_at=at,
        upload_id=upload_id,
        user_id=user_id,
        size_bytes=size_bytes,
        duplicate_of=duplicate_of,
    )


def limits_set(
    bytes_limit: int | None,
    uploads_limit: int | None,
    *,
    user_id: str = "alice",
    at: datetime = NOW,
) -> QuotaLimitsSet:
    return QuotaLimitsSet(
        user_id=user_id,
        occurred_at=at,
        bytes_limit=bytes_limit,
        uploads_limit=uploads_limit,
        set_by="admin-1",
    )
