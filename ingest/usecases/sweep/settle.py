"""Ending an upload for a streamer that cannot: what it stored aborted, its terminal event emitted.

An upload session of one request is normally ended by the instance streaming
it, whose pipeline aborts the multipart upload and emits `upload.failed` or
`upload.cancelled`. When that instance is gone (killed), or the session was
never claimed, someone else must: a DELETE, or the sweep. They first write the
terminal status with `unreported` (one compare-and-swap: of two sweepers, or a
sweeper and a DELETE, one wins), then `Settler.settle` aborts every multipart
upload still open for the session's key, emits the terminal event, and clears
the flag. A settler takes the session for a while first (compare-and-swap on
`settling_until`), so that of several at once one settles it. A completion
the sweep recorded for a gone streamer (`complete`) whose event is still owed
is settled the same way: its recorded `upload.completed` is sent as it is. Anything that
fails leaves the flag set, so the next sweep does it again: an abort refused
while S3 is down is retried, never forgotten.

The event is numbered `LATE_SEQUENCE`, above any number the streamer can have
used (it numbers from 0, one per event), so it sorts after everything that
upload emitted. A settler that dies between the event and clearing the flag
has the event emitted again by the next sweep: at least once, never lost.

How it fails: `settle` answers "failed" (and logs) instead of raising;
`abort_leftovers` raises what the store raises.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

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

SETTLE_SECONDS = 60.0
"""How long one settler holds a session: far more than an abort and an event take."""

_EVENT_CODES: frozenset[str] = frozenset(ErrorCode.__args__)  # type: ignore[attr-defined]


@dataclass
class Leftovers:
    uploads: int = 0
    """Multipart uploads aborted."""
    objects: int = 0
    """Files stored whole but never recorded, deleted."""
    bytes: int = 0
    """What their parts (or the file) held."""


Outcome = Literal["settled", "busy", "failed"]
"""`settle`'s answer: done (or nothing was owed), another settler holds it, or it failed."""


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

    async def settle(self, session: UploadSession) -> Outcome:
        """Abort what an `unreported` session holds, emit its terminal event, clear the flag.

        The session is first taken for `SETTLE_SECONDS` by compare-and-swap, so that of
        several settlers at once one reports it; a failure gives it back at once, for the
        next sweep.
        """
        session_id = session.session_id
        if not session.unreported:
            return "settled"
        session, taken = await self._sessions.mutate(session_id, self._take)
        if not taken:
            return "settled" if not session.unreported else "busy"
        try:
            leftovers = await self.abort_leftovers(session)
            await self._emit(session, max(session.bytes_received, leftovers.bytes))
            await self._sessions.mutate(session_id, _reported)
        except (IngestError, TimeoutError) as error:
            log.warning("could not settle upload %s (retried by the sweep): %s", session_id, error)
            with contextlib.suppress(IngestError):
                await self._sessions.mutate(session_id, _given_back)
            return "failed"
        return "settled"

    def _take(self, session: UploadSession) -> UploadSession | None:
        now = self._sessions.now()
        if not session.unreported:
            return None
        if session.settling_until is not None and session.settling_until > now:
            return None
        until = now + timedelta(seconds=SETTLE_SECONDS)
        return msgspec.structs.replace(session, settling_until=until)

    async def abort_leftovers(self, session: UploadSession) -> Leftovers:
        """Abort every multipart upload still open for the session's key and, unless the
        upload completed, delete a file stored whole there that was never recorded."""
        found = Leftovers()
        store, key = self._store, session.s3_key
        for upload_id in await store.incomplete_uploads(key):
            # Only for what the event reports as received: the abort is what matters.
            with contextlib.suppress(IngestError):
                found.bytes += sum(part.size for part in await store.stored_parts(key, upload_id))
            await store.resume_multipart(key, upload_id).abort()
            found.uploads += 1
        if session.status != "completed":
            # The key is the session's own: an object there belongs to no delivered upload
            # (a streamer killed between storing the file and recording it left it).
            size = await store.stored_size(key)
            if size is not None:
                await store.delete(key)
                found.objects += 1
                found.bytes = max(found.bytes, size)
        return found

    async def _emit(self, session: UploadSession, received: int) -> None:
        if session.status == "completed" and session.completed_event is not None:
            # Completed by the sweep for a gone streamer, its event recorded: that very event.
            await self._sink.emit(session.completed_event)
            return
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
    return msgspec.structs.replace(session, unreported=False, settling_until=None)


def _given_back(session: UploadSession) -> UploadSession | None:
    if session.settling_until is None:
        return None
    return msgspec.structs.replace(session, settling_until=None)
