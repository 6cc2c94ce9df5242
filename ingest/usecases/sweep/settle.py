"""Ending an upload for a streamer that cannot: what it stored aborted, its terminal event emitted.

An upload session of one request is normally ended by the instance streaming
it, whose pipeline aborts the multipart upload and emits `upload.failed` or
`upload.cancelled`. When that instance is gone (killed), or the session was
never claimed, someone else must: a DELETE, or the sweep. They first write the
terminal status with `unreported` (one compare-and-swap: of two sweepers, or a
sweeper and a DELETE, one wins), then `Settler.settle` aborts every multipart
upload still open for the session's key, emits the terminal event, and clears
the flag. Anything that fails leaves the flag set, so the next sweep does it
again: an abort refused while S3 is down is retried, never forgotten.

The event is numbered `LATE_SEQUENCE`, above any number the streamer can have
used (it numbers from 0, one per event), so it sorts after everything that
upload emitted. A settler that dies between the event and clearing the flag
has the event emitted again by the next sweep: at least once, never lost.

How it fails: `settle` returns False (and logs) instead of raising;
`abort_leftovers` raises what the store raises.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import msgspec

from ingest.errors import IngestError
from ingest.model import UploadSession, UploadTarget
from ingest.pipeline.config import PipelineConfig
from ingest.pipeline.container import CONTENT_TYPES, normalize_format
from ingest.pipeline.events import BuildEvent, EventWriter, cancelled_event, failed_event
from ingest.ports import EventSink
from ingest.usecases.sessions import SessionService
from ingest.usecases.tus.store import TusStore
from schemas import ErrorCode

log = logging.getLogger(__name__)

LATE_SEQUENCE = 1_000_000_000
"""The sequence of a terminal event emitted for a streamer that is gone."""

_EVENT_CODES: frozenset[str] = frozenset(ErrorCode.__args__)  # type: ignore[attr-defined]


@dataclass
class Leftovers:
    uploads: int = 0
    """Multipart uploads aborted."""
    bytes: int = 0
    """What their parts held."""


class Settler:
    def __init__(
        self,
        *,
        sessions: SessionService,
        store: TusStore,
        sink: EventSink,
        pipeline: PipelineConfig,
    ) -> None:
        self._sessions = sessions
        self._store = store
        self._sink = sink
        self._pipeline = pipeline

    async def settle(self, session: UploadSession) -> bool:
        """Abort what the session holds, emit its terminal event, clear `unreported`.

        True when all three are done; False when one failed (the sweep tries again).
        """
        if not session.unreported:
            return True
        try:
            leftovers = await self.abort_leftovers(session)
            received = max(session.bytes_received, leftovers.bytes)
            await self._emit(session, received)
            await self._sessions.mutate(session.session_id, _reported)
        except (IngestError, TimeoutError) as error:
            log.warning("could not settle upload %s (retried by the sweep): %s", session, error)
            return False
        return True

    async def abort_leftovers(self, session: UploadSession) -> Leftovers:
        """Abort every multipart upload still open for the session's key."""
        found = Leftovers()
        store, key = self._store, session.s3_key
        for upload_id in await store.incomplete_uploads(key):
            # Only for what the event reports as received: the abort is what matters.
            with contextlib.suppress(IngestError):
                found.bytes += sum(part.size for part in await store.stored_parts(key, upload_id))
            await store.resume_multipart(key, upload_id).abort()
            found.uploads += 1
        return found

    async def _emit(self, session: UploadSession, received: int) -> None:
        writer = EventWriter(
            session_target(session, self._store.bucket), self._sink, LATE_SEQUENCE, self._pipeline
        )
        await writer.emit(terminal_event(session, received))


def terminal_event(session: UploadSession, received: int) -> BuildEvent:
    message = session.message or f"the upload ended ({session.status})"
    if session.status == "cancelled":
        return cancelled_event(message, received)
    code = session.error_code if session.error_code in _EVENT_CODES else "INTERNAL"
    return failed_event(code, message, received)  # type: ignore[arg-type]


def session_target(session: UploadSession, bucket: str) -> UploadTarget:
    """The fields the events of `session` share (limits play no part in an event)."""
    fmt = normalize_format(session.file_format)
    return UploadTarget(
        upload_id=session.session_id,
        user_id=session.user_id,
        bucket=bucket,
        s3_key=session.s3_key,
        filename=session.filename,
        content_type=CONTENT_TYPES.get(fmt or ""),
        declared_format=fmt,
        allowed_formats=(),
        protocol=session.protocol,
        priority=session.priority,
        auto_analyze=session.auto_analyze,
        metadata=session.metadata,
        dashboard_context=session.dashboard_context,
        declared_size=session.expected_file_size,
        max_size=0,
        min_size=0,
    )


def _reported(session: UploadSession) -> UploadSession | None:
    if not session.unreported:
        return None
    return msgspec.structs.replace(session, unreported=False)
