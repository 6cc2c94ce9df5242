"""The admission rules every way in shares: formats named by the client, sizes, the quota."""

from __future__ import annotations

import pytest

from ingest.errors import (
    FormatNotAllowed,
    IncompleteBody,
    QuotaExceeded,
    SizeNotAllowed,
    TooLarge,
    TooSmall,
    UnsupportedFormat,
)
from ingest.usecases.admission import Admission, UploadLimits
from tests.fakes import FixedQuotaView

FORMATS = ("mp4", "mov", "avi", "mkv", "webm")


@pytest.fixture
def quota() -> FixedQuotaView:
    return FixedQuotaView()


@pytest.fixture
def admission(quota: FixedQuotaView) -> Admission:
    return Admission(UploadLimits(max_size=1_000, min_size=10, allowed_formats=FORMATS), quota)


@pytest.mark.parametrize(
    ("file_format", "filename", "expected"),
    [
        (None, None, None),
        (None, "notes", None),
        (None, "Clip.MP4", "mp4"),
        (".WebM", None, "webm"),
        ("mov", "payload.exe", "mov"),  # a format the client names wins over the suffix
    ],
)
def test_the_format_a_client_names(
    admission: Admission, file_format: str | None, filename: str | None, expected: str | None
) -> None:
    assert admission.requested_format(file_format, filename) == expected


@pytest.mark.parametrize(
    ("file_format", "filename", "field"),
    [(None, "payload.exe", "filename"), ("flv", "clip.mp4", "file_format")],
)
def test_a_format_no_session_may_have_is_refused(
    admission: Admission, file_format: str | None, filename: str | None, field: str
) -> None:
    with pytest.raises(FormatNotAllowed) as refused:
        admission.requested_format(file_format, filename)
    assert refused.value.details == {"field": field, "allowed_formats": list(FORMATS)}
    with pytest.raises(FormatNotAllowed) as said_in_a_header:
        admission.requested_format(file_format, filename, field="Upload-Metadata")
    assert said_in_a_header.value.details["field"] == "Upload-Metadata"


def test_a_new_sessions_size_and_a_tus_length_keep_their_own_statuses(
    admission: Admission, quota: FixedQuotaView
) -> None:
    admission.check_expected_size(None)
    admission.check_expected_size(500)
    for size in (9, 1_001):
        with pytest.raises(SizeNotAllowed):
            admission.check_expected_size(size)
    admission.check_upload_length(None)
    admission.check_upload_length(500)
    with pytest.raises(TooLarge):
        admission.check_upload_length(1_001)
    with pytest.raises(TooSmall):
        admission.check_upload_length(9)
    empty = Admission(UploadLimits(max_size=1_000, min_size=0, allowed_formats=FORMATS), quota)
    with pytest.raises(UnsupportedFormat):
        empty.check_upload_length(0)


def test_a_body_is_held_to_the_maximum_and_to_its_sessions_size(admission: Admission) -> None:
    assert admission.check_body_size(None, None) is None
    assert admission.check_body_size(None, 700) == 700
    assert admission.check_body_size(700, 700) == 700
    with pytest.raises(IncompleteBody) as under_declared:
        admission.check_body_size(600, 700)
    assert under_declared.value.error_code == "SIZE_MISMATCH"
    with pytest.raises(TooLarge):
        admission.check_body_size(1_001, None)
    with pytest.raises(TooLarge) as over_declared:
        admission.check_body_size(800, 700)
    assert over_declared.value.details == {"expected_file_size": 700}


def test_the_quota_counts_uploads_and_bytes(admission: Admission, quota: FixedQuotaView) -> None:
    quota.set("ann", bytes_used=quota.bytes_limit - 100, uploads_used=quota.uploads_limit)
    with pytest.raises(QuotaExceeded) as no_uploads_left:
        admission.check_quota("ann", None, new_upload=True)
    assert no_uploads_left.value.details == {
        "limit": quota.bytes_limit,
        "used": quota.bytes_limit - 100,
        "requested": None,
        "remaining_quota": 100,
        "uploads_remaining": 0,
        "uploads_limit": quota.uploads_limit,
        "uploads_used": quota.uploads_limit,
        "reset_date": quota.status("ann").period_end,
    }
    # More bytes of an upload already counted: only the bytes matter.
    assert admission.check_quota("ann", 100, new_upload=False).bytes_remaining == 100
    with pytest.raises(QuotaExceeded):
        admission.check_quota("ann", 101, new_upload=False)
