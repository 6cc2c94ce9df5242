"""QuotaView: the fake, the in-process bus's view and the Kafka view answer alike."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import msgspec

from ingest.ports import QuotaStatus, QuotaView
from schemas import CountedUpload, QuotaUpdated
from schemas.periods import current_period, rfc3339
from tests.contract.conftest import PERIOD_DAYS, QUOTA_BYTES, QUOTA_UPLOADS, QuotaBackend

GiB = 1024**3


def a_user() -> str:
    """A user of this test only: tests of one module share the real quota topic."""
    return f"quota-{uuid.uuid4().hex[:12]}"


def snapshot(user_id: str, **usage: int) -> QuotaUpdated:
    """A snapshot of the current period, as the quota consumer publishes it."""
    now = datetime.now(UTC)
    start, end = current_period(now, PERIOD_DAYS)
    return QuotaUpdated(
        user_id=user_id,
        period_start=start,
        period_end=end,
        bytes_used=usage.get("bytes_used", 0),
        bytes_limit=usage.get("bytes_limit", QUOTA_BYTES),
        uploads_used=usage.get("uploads_used", 0),
        uploads_limit=usage.get("uploads_limit", QUOTA_UPLOADS),
        updated_at=now,
    )


def status_of(published: QuotaUpdated) -> QuotaStatus:
    return QuotaStatus(
        user_id=published.user_id,
        bytes_limit=published.bytes_limit,
        bytes_used=published.bytes_used,
        uploads_limit=published.uploads_limit,
        uploads_used=published.uploads_used,
        period_start=rfc3339(published.period_start),
        period_end=rfc3339(published.period_end),
    )


async def answered(view: QuotaView, expected: QuotaStatus, *, seconds: float = 20) -> None:
    """Polls: a view reads its topic in the background and has no change notification."""
    async with asyncio.timeout(seconds):
        while view.status(expected.user_id) != expected:
            await asyncio.sleep(0.05)


async def test_a_user_never_published_has_the_defaults_for_the_current_period(
    quota_view: QuotaBackend,
) -> None:
    user = a_user()
    start, end = current_period(datetime.now(UTC), PERIOD_DAYS)

    status = quota_view.view.status(user)

    assert status == QuotaStatus(
        user_id=user,
        bytes_limit=QUOTA_BYTES,
        bytes_used=0,
        uploads_limit=QUOTA_UPLOADS,
        uploads_used=0,
        period_start=rfc3339(start),
        period_end=rfc3339(end),
    )
    assert (status.bytes_remaining, status.uploads_remaining) == (QUOTA_BYTES, QUOTA_UPLOADS)


async def test_the_latest_snapshot_published_for_a_user_is_the_answer(
    quota_view: QuotaBackend,
) -> None:
    first, other = a_user(), a_user()
    await quota_view.publish(snapshot(first, bytes_used=1 * GiB, uploads_used=2))
    latest = snapshot(first, bytes_used=3 * GiB, uploads_used=4, bytes_limit=20 * GiB)
    await quota_view.publish(latest)
    elsewhere = snapshot(other, uploads_used=99, uploads_limit=100)
    await quota_view.publish(elsewhere)

    await answered(quota_view.view, status_of(latest))
    await answered(quota_view.view, status_of(elsewhere))
    assert quota_view.view.status(first).bytes_remaining == 17 * GiB
    assert quota_view.view.status(other).uploads_remaining == 1


async def test_check_answers_once_started(quota_view: QuotaBackend) -> None:
    await quota_view.view.check()


async def test_an_upload_counts_once_the_current_snapshot_lists_it(
    quota_view: QuotaBackend,
) -> None:
    user = a_user()
    view = quota_view.view
    assert not view.counts(user, "u-1")
    listed = msgspec.structs.replace(
        snapshot(user, bytes_used=300, uploads_used=2),
        counted_uploads=[
            CountedUpload(upload_id="u-1", size_bytes=100),
            CountedUpload(upload_id="u-2", size_bytes=200),
        ],
    )
    await quota_view.publish(listed)
    await answered(view, status_of(listed))
    assert view.counts(user, "u-1")
    assert view.counts(user, "u-2")
    assert not view.counts(user, "u-3")
    assert not view.counts(a_user(), "u-1")
