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
what its session allows, QuotaExceeded (429). The quota counts the published
snapshot plus this instance's uploads in flight (`ingest.usecases.inflight`):
`admit` holds a new upload's declared size, `charge` stops a streaming body on
the byte that passes what is left. Every new upload also needs room for its
events: an event sink with a journal (`EventBacklog`) that must not take on
more raises JournalFull (503) before anything else is checked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath

from ingest.errors import (
    FormatNotAllowed,
    IncompleteBody,
    QuotaExceeded,
    SizeNotAllowed,
    TooLarge,
    TooSmall,
    UnsupportedFormat,
)
from ingest.ports import EventBacklog, EventSink, QuotaStatus, QuotaView
from ingest.usecases.inflight import InFlightUploads

RECHECK_BYTES = 8 * 1024 * 1024
"""How far a streaming body may go between two full counts of its user's quota."""


@dataclass(frozen=True)
class UploadLimits:
    max_size: int
    min_size: int
    allowed_formats: tuple[str, ...]


def _always_room() -> None:
    return None


@dataclass(frozen=True)
class Admission:
    limits: UploadLimits
    quota: QuotaView
    in_flight: InFlightUploads = field(
        # One ledger per process, shared by every way in; composition roots pass it.
        default_factory=lambda: InFlightUploads(hold_seconds=3600.0)
    )
    room: Callable[[], None] = _always_room
    """Raises JournalFull when the events of one more upload cannot be taken on."""

    @classmethod
    def over(
        cls,
        limits: UploadLimits,
        quota: QuotaView,
        sink: EventSink,
        in_flight: InFlightUploads | None = None,
    ) -> Admission:
        """The admission of a service whose uploads emit to `sink`."""
        room = sink.check_room if isinstance(sink, EventBacklog) else _always_room
        if in_flight is None:
            return cls(limits, quota, room=room)
        return cls(limits, quota, in_flight, room=room)

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
        maximum or over what the session declared, IncompleteBody when it is under the latter."""
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
        if (
            declared_size is not None
            and expected_size is not None
            and declared_size < expected_size
        ):
            raise IncompleteBody(
                f"the body is {declared_size} bytes; the session declared {expected_size}",
                details={"expected_file_size": expected_size, "declared_size": declared_size},
            )
        return size

    def check_quota(
        self, user_id: str, size: int | None, *, new_upload: bool, upload_id: str | None = None
    ) -> QuotaStatus:
        """The user's quota, counting the snapshot and this instance's uploads in flight
        (but for `upload_id`, the one asking), unless one more upload (`new_upload`) or
        `size` bytes pass it; JournalFull first when a new upload's events have no room."""
        if new_upload:
            self.room()
        status = self.usage(user_id, excluding=upload_id)
        if new_upload and status.uploads_remaining <= 0:
            raise QuotaExceeded(
                f"the upload limit of {status.uploads_limit} per period is reached",
                details=_details(status, size),
            )
        if size is not None and size > status.bytes_remaining:
            raise QuotaExceeded(
                f"{size} bytes would pass the quota ({status.bytes_remaining} bytes remaining)",
                details=_details(status, size),
            )
        return status

    def admit(self, user_id: str, upload_id: str, size: int | None) -> QuotaStatus:
        """`check_quota` for a new upload, then hold its size as in flight until it ends.

        No await between the two, so concurrent requests on this instance cannot
        both take the last of a quota.
        """
        status = self.check_quota(user_id, size, new_upload=True, upload_id=upload_id)
        self.in_flight.hold(user_id, upload_id, size)
        return status

    def charge(self, user_id: str, upload_id: str, received: int) -> None:
        """A streaming body has brought `received` bytes: QuotaExceeded on the byte that
        passes what is left once the snapshot and the other uploads in flight are counted.

        Called on every chunk, so the full count (every upload of the user in flight here)
        is redone only every `RECHECK_BYTES`, never past what the last count left: other
        uploads growing meanwhile can pass the quota by at most that much each.
        """
        if self.in_flight.within_allowance(upload_id, received):
            self.in_flight.received(upload_id, received)
            return
        status = self.usage(user_id, excluding=upload_id)
        if received > status.bytes_remaining:
            raise QuotaExceeded(
                f"the upload passed the {status.bytes_remaining} bytes left in the quota",
                details=_details(status, received),
            )
        self.in_flight.received(upload_id, received)
        self.in_flight.allow(upload_id, min(status.bytes_remaining, received + RECHECK_BYTES))

    def usage(self, user_id: str, *, excluding: str | None = None) -> QuotaStatus:
        """The published snapshot plus what this instance's other uploads in flight hold."""
        status = self.quota.status(user_id)
        in_flight = self.in_flight.usage(
            user_id,
            excluding=excluding,
            counted=lambda upload_id: self.quota.counts(user_id, upload_id),
        )
        if not in_flight.uploads and not in_flight.bytes:
            return status
        return replace(
            status,
            bytes_used=status.bytes_used + in_flight.bytes,
            uploads_used=status.uploads_used + in_flight.uploads,
        )


def _details(status: QuotaStatus, requested: int | None) -> dict[str, object]:
    return {
        "limit": status.bytes_limit,
        "used": status.bytes_used,
        "requested": requested,
        "reset_date": status.period_end,
        "remaining_quota": status.bytes_remaining,
        "uploads_limit": status.uploads_limit,
        "uploads_used": status.uploads_used,
        "uploads_remaining": status.uploads_remaining,
    }
