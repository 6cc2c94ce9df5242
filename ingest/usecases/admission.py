"""What may be uploaded, for every way in: the format a client names, the size, the quota.

`POST /v1/uploads` (and its dashboard alias), the body sent to a session and
tus creation all ask here, so a file refused one way is refused every way,
with the same error. A format is named by the client (`file_format`, a tus
`filetype`) or, failing that, by the file name's suffix: either must be an
allowed format, so `payload.exe` is refused however it comes in.

Pure checks on the limits and the quota view. Each raises the domain error its
status comes from, mapped at the HTTP edge: FormatNotAllowed and
SizeNotAllowed (400) when a session is created, TooLarge (413), TooSmall (400)
and UnsupportedFormat (415) for a tus Upload-Length, TooLarge for a body over
what its session allows, QuotaExceeded (429).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from ingest.errors import (
    FormatNotAllowed,
    QuotaExceeded,
    SizeNotAllowed,
    TooLarge,
    TooSmall,
    UnsupportedFormat,
)
from ingest.ports import QuotaStatus, QuotaView


@dataclass(frozen=True)
class UploadLimits:
    max_size: int
    min_size: int
    allowed_formats: tuple[str, ...]


@dataclass(frozen=True)
class Admission:
    limits: UploadLimits
    quota: QuotaView

    def requested_format(
        self, file_format: str | None, filename: str | None, *, field: str | None = None
    ) -> str | None:
        """The format the client names, if any: `file_format`, else the file name's suffix.

        `field` names where the client said it in a refusal (by default
        "file_format" or "filename").
        """
        if file_format:
            requested, said_in = file_format.lower().lstrip("."), "file_format"
        elif filename and PurePosixPath(filename).suffix:
            requested, said_in = PurePosixPath(filename).suffix.lower().lstrip("."), "filename"
        else:
            return None
        allowed = self.limits.allowed_formats
        if requested not in allowed:
            raise FormatNotAllowed(
                f"format {requested!r} is not allowed; allowed: {', '.join(allowed)}",
                details={"field": field or said_in, "allowed_formats": list(allowed)},
            )
        return requested

    def check_expected_size(self, size: int | None) -> None:
        """The `expected_file_size` of a new session: within the limits, or SizeNotAllowed."""
        limits = self.limits
        if size is None:
            return
        if size > limits.max_size:
            raise SizeNotAllowed(
                f"expected_file_size {size} is over the maximum {limits.max_size}",
                details={"field": "expected_file_size", "max_file_size": limits.max_size},
            )
        if size < limits.min_size:
            raise SizeNotAllowed(
                f"expected_file_size {size} is under the minimum {limits.min_size}",
                details={"field": "expected_file_size", "min_file_size": limits.min_size},
            )

    def check_upload_length(self, length: int | None) -> None:
        """A tus Upload-Length (at creation, or declared late), with tus's statuses."""
        limits = self.limits
        if length is None:
            return
        if length > limits.max_size:
            raise TooLarge(
                f"the upload is {length} bytes; the maximum is {limits.max_size}",
                details={"upload_length": length, "max_size": limits.max_size},
            )
        if length < limits.min_size:
            raise TooSmall(
                f"the upload is {length} bytes; the minimum is {limits.min_size}",
                details={"upload_length": length, "min_size": limits.min_size},
            )
        if length == 0:
            raise UnsupportedFormat("an empty file is not a video", details={"upload_length": 0})

    def check_body_size(self, declared_size: int | None, expected_size: int | None) -> int | None:
        """The size a body sent to a session will have, if known; TooLarge when it is over the
        maximum or over what the session declared."""
        size = declared_size if declared_size is not None else expected_size
        if size is not None and size > self.limits.max_size:
            raise TooLarge(
                f"the file is {size} bytes; the maximum is {self.limits.max_size}",
                details={"max_file_size": self.limits.max_size, "declared_size": size},
            )
        if (
            declared_size is not None
            and expected_size is not None
            and declared_size > expected_size
        ):
            raise TooLarge(
                f"the body is {declared_size} bytes; the session declared {expected_size}",
                details={"expected_file_size": expected_size},
            )
        return size

    def check_quota(self, user_id: str, size: int | None, *, new_upload: bool) -> QuotaStatus:
        """The user's quota, unless one more upload (`new_upload`) or `size` bytes pass it."""
        status = self.quota.status(user_id)
        details = {
            "remaining_quota": status.bytes_remaining,
            "uploads_remaining": status.uploads_remaining,
            "uploads_limit": status.uploads_limit,
            "reset_date": status.period_end,
        }
        if new_upload and status.uploads_remaining <= 0:
            raise QuotaExceeded(
                f"the upload limit of {status.uploads_limit} per period is reached",
                details=details,
            )
        if size is not None and size > status.bytes_remaining:
            raise QuotaExceeded(
                f"{size} bytes would pass the quota ({status.bytes_remaining} bytes remaining)",
                details=details,
            )
        return status
