"""Whether a tus PATCH may go on: offsets, lengths and the upload's state, before its body.

Pure checks on the session document and the request's headers, shared by the
Expect handler and the lease taking, so that both refuse the same things in
the same words. The rules every way in shares (sizes, quota) are the upload
admission's (`ingest.usecases.admission`); what is tus's own is here. Each
raises the domain error its status comes from: TooLarge (413), TooSmall and
InvalidRequest (400), QuotaExceeded (429), UnsupportedFormat (415),
OffsetMismatch (409), UploadGone (410).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import msgspec

from ingest.errors import InvalidRequest, OffsetMismatch, TooLarge, UploadGone
from ingest.usecases.admission import Admission
from ingest.usecases.tus.protocol import PatchRequest
from ingest.usecases.tus.state import TusSession, TusState, with_state


@dataclass(frozen=True)
class PatchAdmission:
    rules: Admission
    clock: Callable[[], datetime]

    def check_end(self, end: int, length: int | None) -> None:
        """A request that would take the upload to `end` bytes (Content-Length known)."""
        if length is not None and end > length:
            raise TooLarge(
                f"this request would take the upload to {end} bytes, past its length of {length}",
                details={"upload_length": length, "end": end},
            )
        max_size = self.rules.limits.max_size
        if end > max_size:
            raise TooLarge(
                f"this request would take the upload past the maximum of {max_size}",
                details={"max_size": max_size, "end": end},
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
            self.rules.check_quota(
                session.user_id, length, new_upload=False, upload_id=session.session_id
            )
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
        self.rules.check_upload_length(request.length)
        return request.length


def check_partial_length(length: int | None, max_size: int) -> None:
    """A partial upload's Upload-Length: no file's minimum (its final's is checked), but
    never past the maximum, and never empty (a piece of nothing joins nothing)."""
    if length is None:
        return
    if length > max_size:
        raise TooLarge(
            f"the upload is {length} bytes; the maximum is {max_size}",
            details={"upload_length": length, "max_size": max_size},
        )
    if length == 0:
        raise InvalidRequest(
            "a partial upload must hold at least one byte", details={"header": "Upload-Length"}
        )
