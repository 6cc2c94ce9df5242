"""Cancelling an upload, whichever way it came in (`DELETE /v1/uploads/{id}` and its aliases).

A session streamed in one request is cancelled by the upload service, which
stops its upload wherever it streams. A tus upload is terminated by the tus
service, so a PATCH writing to it stops on any instance and the upload is
reported cancelled. Cancelling twice is not an error.

How it fails: SessionNotFound (404) for an unknown upload, Forbidden (403) for
another user's, SessionConflict (409) for an upload that ended otherwise
(completed, failed, expired).
"""

from __future__ import annotations

from ingest.auth import Principal
from ingest.errors import SessionConflict, UploadGone
from ingest.usecases.sessions import SessionService
from ingest.usecases.tus.service import TusService
from ingest.usecases.uploads import UploadService


async def cancel_upload(
    session_id: str,
    principal: Principal,
    *,
    sessions: SessionService,
    uploads: UploadService,
    tus: TusService | None,
) -> None:
    session, _ = await sessions.load(session_id)
    if session.protocol != "tus" or tus is None:
        await uploads.cancel(session_id, principal)
        return
    try:
        await tus.terminate(session_id, principal)
    except UploadGone as error:
        status = error.details.get("status")
        if status != "cancelled":
            raise SessionConflict(
                f"upload session {session_id} already ended ({status})", details={"status": status}
            ) from None
