"""Whether a tus request may go on: sizes, quota, offsets and the upload's state, before its body.

Pure checks on the session document and the request's headers, shared by the
creation, the Expect handler and the lease taking, so that all three refuse
the same things in the same words. Each raises the domain error its status
comes from: TooLarge (413), TooSmall and InvalidRequest (400), QuotaExceeded
(429), UnsupportedFormat (415), OffsetMismatch (409), UploadGone (410).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import msgspec

from ingest.errors import (
    InvalidRequest,
    OffsetMismatch,
    QuotaExceeded,
    TooLarge,
    TooSmall,
    UnsupportedFormat,
    UploadGone,
)
from ingest.ports import QuotaView
from ingest.usecases.tus.protocol import PatchRequest
from ingest.usecases.tus.state import TusSession, TusState, with_state
from ingest.usecases.uploads import UploadLimits


@dataclass(frozen=True)
class Admission:
    limits: UploadLimits
    quota: QuotaView
    clock: Callable[[], datetime]

    def check_length(self, length: int | None) -> None:
        """An Upload-Length the service accepts (at creation, or declared late)."""
        if length is None:
            return
        if length > self.limits.max_size:
            raise TooLarge(
                f"the upload is {length} bytes; the maximum is {self.limits.max_size}",
                details={"upload_length": length, "max_size": self.limits.max_size},
            )
        if length < self.limits.min_size:
            raise TooSmall(
                f"the upload is {length} bytes; the minimum is {self.limits.min_size}",
                details={"upload_length": length, "min_size": self.limits.min_size},
            )
        if length == 0:
            raise UnsupportedFormat("an empty file is not a video", details={"upload_length": 0})

    def check_end(self, end: int, length: int | None) -> None:
        """A request that would take the upload to `end` bytes (Content-Length known)."""
        if length is not None and end > length:
            raise TooLarge(
                f"this request would take the upload to {end} bytes, past its length of {length}",
                details={"upload_length": length, "end": end},
            )
        if end > self.limits.max_size:
            raise TooLarge(
                f"this request would take the upload past the maximum of {self.limits.max_size}",
                details={"max_size": self.limits.max_size, "end": end},
            )

    def check_quota(self, user_id: str, length: int | None, *, new_upload: bool) -> None:
        status = self.quota.status(user_id)
        if new_upload and status.uploads_remaining <= 0:
            raise QuotaExceeded(
                f"the upload limit of {status.uploads_limit} per period is reached",
                details={"uploads_limit": status.uploads_limit, "reset_date": status.period_end},
            )
        if length is not None and length > status.bytes_remaining:
            raise QuotaExceeded(
                f"{length} bytes would pass the quota ({status.bytes_remaining} bytes remaining)",
                details={
                    "remaining_quota": status.bytes_remaining,
                    "reset_date": status.period_end,
                },
            )

    def for_patch(self, request: PatchRequest) -> Callable[[TusSession], TusSession]:
        """Whether `request` may write to the upload as it is now; sets a deferred length."""

        def admit(session: TusSession) -> TusSession:
            state = self._writable(session)
            if request.offset != state.offset:
                raise OffsetMismatch(
                    f"the upload is at offset {state.offset}, not {request.offset}",
                    details={"offset": state.offset, "requested_offset": request.offset},
                )
            length = self._length_after(state, request)
            if request.content_length is not None:
                self.check_end(request.offset + request.content_length, length)
            if length == state.upload_length:
                return session
            self.check_quota(session.user_id, length, new_upload=False)
            return with_state(
                msgspec.structs.replace(session, expected_file_size=length), upload_length=length
            )

        return admit

    def for_completed(self, session: TusSession, request: PatchRequest) -> None:
        """A PATCH to a completed upload: harmless only if it adds nothing at its end."""
        state = session.state
        if request.offset != state.offset:
            raise OffsetMismatch(
                f"the upload is complete at offset {state.offset}",
                details={"offset": state.offset, "requested_offset": request.offset},
            )
        if request.content_length:
            self.check_end(state.offset + request.content_length, state.upload_length)

    def _writable(self, session: TusSession) -> TusState:
        if session.status == "completed":
            raise OffsetMismatch(
                "the upload is already complete", details={"offset": session.state.offset}
            )
        if session.status != "uploading":
            raise UploadGone(f"the upload is {session.status}", details={"status": session.status})
        state = session.state
        now = self.clock()
        if now >= session.expires_at and not state.lease_alive(now):
            raise UploadGone("the upload expired", details={"status": "expired"})
        return state

    def _length_after(self, state: TusState, request: PatchRequest) -> int | None:
        if request.length is None or request.length == state.upload_length:
            return state.upload_length
        if state.upload_length is not None:
            raise InvalidRequest(
                f"Upload-Length is {state.upload_length} and cannot change",
                details={"header": "Upload-Length", "upload_length": state.upload_length},
            )
        if request.length < state.offset:
            raise InvalidRequest(
                f"Upload-Length {request.length} is less than the {state.offset} bytes stored",
                details={"header": "Upload-Length", "offset": state.offset},
            )
        self.check_length(request.length)
        return request.length
