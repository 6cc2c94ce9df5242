"""The uploads in flight on one instance, and the quota they count against with the snapshot."""

from __future__ import annotations

import pytest

from ingest.errors import QuotaExceeded
from ingest.usecases.admission import Admission, UploadLimits
from ingest.usecases.inflight import InFlightUploads, InFlightUsage
from tests.fakes import FixedQuotaView


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ledger(clock: Clock) -> InFlightUploads:
    return InFlightUploads(hold_seconds=60.0, clock=clock)


@pytest.fixture
def quota() -> FixedQuotaView:
    return FixedQuotaView()


@pytest.fixture
def admission(quota: FixedQuotaView, ledger: InFlightUploads) -> Admission:
    limits = UploadLimits(max_size=quota.bytes_limit, min_size=0, allowed_formats=("mp4",))
    return Admission(limits, quota, ledger)


def test_open_uploads_count_until_they_end_or_expire(ledger: InFlightUploads, clock: Clock) -> None:
    ledger.hold("ann", "a", 100)
    ledger.hold("ann", "b", None)
    ledger.hold("bob", "c", 7)
    assert ledger.usage("ann") == InFlightUsage(bytes=100, uploads=2)
    assert ledger.usage("ann", excluding="a") == InFlightUsage(bytes=0, uploads=1)
    ledger.release("a")
    assert ledger.usage("ann") == InFlightUsage(bytes=0, uploads=1)
    clock.now = 61.0
    assert ledger.usage("ann") == InFlightUsage(bytes=0, uploads=0)
    ledger.hold("carl", "d", 1)  # sweeps every expired entry, not only the asker's
    assert len(ledger) == 1


def test_a_streaming_body_counts_what_arrived_and_never_expires(
    ledger: InFlightUploads, clock: Clock
) -> None:
    ledger.streaming("ann", "a", 100)
    ledger.received("a", 50)
    assert ledger.usage("ann").bytes == 100
    ledger.received("a", 150)
    clock.now = 1_000.0
    assert ledger.usage("ann") == InFlightUsage(bytes=150, uploads=1)
    ledger.release("a")
    ledger.release("a")
    assert len(ledger) == 0
    assert ledger.usage("ann") == InFlightUsage(bytes=0, uploads=0)


def test_admission_counts_this_instances_uploads_in_flight(
    admission: Admission, quota: FixedQuotaView
) -> None:
    quota.set("ann", bytes_used=quota.bytes_limit - 1_000, uploads_used=quota.uploads_limit - 3)
    admission.admit("ann", "a", 600)
    with pytest.raises(QuotaExceeded) as refused:
        admission.admit("ann", "b", 401)
    assert refused.value.details["limit"] == quota.bytes_limit
    assert refused.value.details["used"] == quota.bytes_limit - 400
    assert refused.value.details["requested"] == 401
    assert refused.value.details["reset_date"] == quota.status("ann").period_end
    admission.admit("ann", "b", 400)
    admission.admit("ann", "c", None)
    with pytest.raises(QuotaExceeded) as no_uploads_left:
        admission.admit("ann", "d", None)
    assert no_uploads_left.value.details["uploads_used"] == quota.uploads_limit
    # The one asking is not counted against itself.
    assert admission.check_quota("ann", 600, new_upload=True, upload_id="a").bytes_remaining == 600


def test_a_streaming_body_is_stopped_on_the_byte_past_the_quota(
    admission: Admission, quota: FixedQuotaView, ledger: InFlightUploads
) -> None:
    quota.set("ann", bytes_used=quota.bytes_limit - 1_000, uploads_used=0)
    admission.admit("ann", "other", 300)
    ledger.streaming("ann", "a", None)
    admission.charge("ann", "a", 700)
    assert ledger.usage("ann").bytes == 1_000
    with pytest.raises(QuotaExceeded):
        admission.charge("ann", "a", 701)
    # What the others hold shrinks when they end: the same body may go on.
    ledger.release("other")
    admission.charge("ann", "a", 1_000)


def test_a_completed_upload_counts_until_a_snapshot_charges_it(
    admission: Admission, quota: FixedQuotaView, ledger: InFlightUploads
) -> None:
    admission.admit("ann", "a", 1000)
    ledger.streaming("ann", "a", 1000)
    ledger.settled("a", 900)
    # Between the upload's end and the consumer's snapshot the bytes are still counted.
    assert admission.usage("ann").bytes_used == 900
    assert admission.usage("ann").uploads_used == 1
    quota.set("ann", bytes_used=900, uploads_used=1, counted=["a"])
    # Counted by the snapshot now, and never twice.
    assert admission.usage("ann").bytes_used == 900
    assert admission.usage("ann").uploads_used == 1
    assert len(ledger) == 0


def test_a_completed_upload_no_snapshot_charges_is_let_go_after_the_settle_time(
    clock: Clock,
) -> None:
    ledger = InFlightUploads(hold_seconds=60.0, settle_seconds=30.0, clock=clock)
    ledger.streaming("ann", "a", 10)
    ledger.settled("a", 10)
    assert ledger.usage("ann", counted=lambda upload_id: False) == InFlightUsage(10, 1)
    clock.now = 31.0
    assert ledger.usage("ann", counted=lambda upload_id: False) == InFlightUsage(0, 0)


def test_a_streaming_body_is_stopped_on_the_byte_past_the_quota_between_full_counts(
    admission: Admission, quota: FixedQuotaView, ledger: InFlightUploads
) -> None:
    quota.set("ann", bytes_used=quota.bytes_limit - 1000)
    admission.admit("ann", "a", None)
    ledger.streaming("ann", "a", None)
    for received in range(100, 1001, 100):
        admission.charge("ann", "a", received)
    assert ledger.usage("ann") == InFlightUsage(bytes=1000, uploads=1)
    with pytest.raises(QuotaExceeded):
        admission.charge("ann", "a", 1001)
