"""How a tus upload ends: completed, failed, cancelled or expired, each recorded and reported once.

Every ending is one compare-and-swap on the session document that also moves
`next_sequence` past the event it reports, so the event's number is never
used twice; the event is emitted after the state is recorded. An upload that
ends without completing has its multipart upload aborted and its tail removed
(`clean_up`), by whoever ended it or, failing that, by the next request that
finds it ended and not yet cleaned.

How it fails: completion raises StorageError and gives the lease back (the
upload stays complete-but-unrecorded and is completed again later); the
completed event is recorded in the session document before it is sent, so
one the sink did not take is left to `ingest reconcile`; events
that cannot be sent and clean-ups that fail are logged, never raised, since
the ending itself is recorded either way.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

import msgspec

from infra import layout
from ingest.errors import IngestError, StorageError, UploadGone
from ingest.model import UploadResult
from ingest.pipeline.config import PipelineConfig
from ingest.pipeline.ending import ClaimOriginal
from ingest.ports import EventSink
from ingest.usecases.admission import UploadLimits
from ingest.usecases.duplicates import DuplicateIndex, StoredFile
from ingest.usecases.tus.completion import complete_multipart, complete_upload
from ingest.usecases.tus.events import UNHEARD, ProgressFollower, TusEvents, upload_target
from ingest.usecases.tus.state import TusSession, TusSessions, TusState, with_state
from ingest.usecases.tus.store import TusStore
from ingest.usecases.tus.tail import segments_of
from schemas import Event, UploadCompleted

log = logging.getLogger(__name__)

Gone = Callable[[str], bool]
"""Whether the instance of this id is gone (its heartbeat stopped): its leases hold nothing."""


def _nobody(instance_id: str) -> bool:
    return False


@dataclass(frozen=True)
class Lifecycle:
    sessions: TusSessions
    store: TusStore
    sink: EventSink
    duplicates: DuplicateIndex
    pipeline: PipelineConfig
    limits: UploadLimits
    clock: Callable[[], datetime]
    follower: ProgressFollower = field(default_factory=ProgressFollower)
    """Each upload's last event writer here: a request's events go after the last one's."""

    def events_for(self, session: TusSession, first_sequence: int) -> TusEvents:
        """The events of `session`, numbered from `first_sequence`, its progress from its offset."""
        state = session.state
        target = upload_target(
            session,
            bucket=self.store.bucket,
            allowed_formats=self.limits.allowed_formats,
            max_size=self.limits.max_size,
        )
        sink = UNHEARD if state.concat == "partial" else self.sink
        writer = self.follower.writer(target, sink, self.pipeline, first_sequence)
        events = TusEvents(writer, self.pipeline, target.declared_size)
        events.start_from(state.offset)
        events.parts_stored = state.offset // state.part_size
        events.started = state.started_at is not None
        return events

    def tail_key(self, session_id: str, offset: int) -> str:
        return layout.tus_tail_key(session_id, offset)

    async def complete(
        self, session: TusSession, owner: str, events: TusEvents, *, sha256: str | None = None
    ) -> TusSession:
        """Complete the file under the lease `owner` holds, record it, report it.

        `sha256` is the file's, when the caller carried it; otherwise it is read back.
        A partial upload is only stored, to be joined (`store_partial`).
        """
        if session.state.concat == "partial":
            return await self.store_partial(session, owner, events)
        try:
            result = await complete_upload(
                session,
                store=self.store,
                claim_original=self.claim_original(session),
                lookup_timeout=self.pipeline.event_timeout,
                wall_clock=self.clock,
                sha256=sha256,
            )
        except IngestError:
            await self.release(session.session_id, owner, events.next_sequence)
            raise
        return await self.finish(session, events, result)

    def claim_original(self, session: TusSession) -> ClaimOriginal:
        """How the file of `session` is recorded as its bytes' original (or found a duplicate)."""
        return lambda result: self.duplicates.claim(
            StoredFile(
                user_id=session.user_id,
                session_id=session.session_id,
                filename=session.filename,
                result=result,
            )
        )

    async def finish(
        self,
        session: TusSession,
        events: TusEvents,
        result: UploadResult,
        *,
        change: Callable[[TusSession], TusSession] = lambda session: session,
    ) -> TusSession:
        """Record the upload completed with `result` (and `change`), then report it."""
        recorded: list[TusSession] = []

        async def record(event: Event) -> None:
            # Recorded before it is sent, event and all, so `ingest reconcile` can send it again.
            if not isinstance(event, UploadCompleted):
                raise TypeError(f"not a completed event: {type(event).__name__}")

            def finish(current: TusSession) -> TusSession:
                completed = msgspec.structs.replace(
                    change(current),
                    status="completed",
                    message="upload completed",
                    bytes_received=result.size_bytes,
                    result=result,
                    completed_event=event,
                )
                return with_state(completed, lease=None, next_sequence=events.next_sequence)

            recorded.append(await self.sessions.mutate(session.session_id, finish))

        try:
            await events.completed(result, before_send=record)
        except Exception as error:
            if isinstance(error, TimeoutError) and not recorded:
                raise StorageError("recording the completed upload timed out") from None
            if not recorded:
                raise
            # The completion is recorded either way; reconcile sends what the sink did not take.
            log.warning("could not emit the completion of tus upload %s", session.session_id)
        return recorded[-1]

    async def store_partial(self, session: TusSession, owner: str, events: TusEvents) -> TusSession:
        """Make a partial upload's parts one object, the source its final upload copies from.

        It stays "uploading" (and expires like any upload) until a final joins it.
        """
        length = session.state.upload_length
        assert length is not None
        try:
            await complete_multipart(session, self.store, length)
            stored = await self.store.stored_size(session.s3_key)
            if stored != length:
                raise StorageError(
                    f"the object of partial upload {session.session_id} is not {length} bytes",
                    details={"key": session.s3_key, "size": stored, "upload_length": length},
                )
        except IngestError:
            await self.release(session.session_id, owner, events.next_sequence)
            raise

        def joinable(current: TusSession) -> TusSession:
            message = f"all {length} bytes stored; join it with Upload-Concat: final"
            return with_state(
                msgspec.structs.replace(current, message=message),
                stored=True,
                lease=None,
                next_sequence=events.next_sequence,
            )

        return await self.sessions.mutate(session.session_id, joinable)

    async def fail(self, session: TusSession, events: TusEvents, error: IngestError) -> None:
        """End the upload for good on `error` (a body that is not a video)."""

        def failed(current: TusSession) -> TusSession:
            ended = msgspec.structs.replace(
                current, status="failed", message=error.message, error_code=error.error_code
            )
            return with_state(ended, lease=None, next_sequence=events.next_sequence + 1)

        session = await self.sessions.mutate(session.session_id, failed)
        await quietly(events.failed(error.event_code, error.message, session.bytes_received))
        await self.clean_up(session)

    async def cancel(self, session_id: str, reason: str, *, gone: Gone = _nobody) -> None:
        """Mark the upload cancelled; report and clean up unless a request still writes to it.

        That request's lease keeper sees the cancel and does both (`after_cancel`); a
        request on an instance that is `gone` never will, so it is done here.
        """
        first: list[int] = []

        def cancel(current: TusSession) -> TusSession:
            first.clear()
            if current.status != "uploading":
                raise _gone(current.status)
            cancelled = msgspec.structs.replace(
                current, status="cancelled", message=reason, error_code="UPLOAD_CANCELLED"
            )
            state = current.state
            if self._writer_alive(state, gone):
                return cancelled
            first.append(state.next_sequence)
            return with_state(cancelled, lease=None, next_sequence=state.next_sequence + 1)

        session = await self.sessions.mutate(session_id, cancel)
        if first:
            await self._report_cancel(session, first[0])

    async def report_abandoned_cancel(self, session_id: str, *, gone: Gone) -> bool:
        """A cancel the writing request never reported (its instance died, its lease lapsed):
        report it and clean up here. True when this call reported it."""
        first: list[int] = []

        def take(current: TusSession) -> TusSession | None:
            first.clear()
            state = current.tus
            if current.status != "cancelled" or state is None or state.lease is None:
                return None
            if self._writer_alive(state, gone):
                return None
            first.append(state.next_sequence)
            return with_state(current, lease=None, next_sequence=state.next_sequence + 1)

        session = await self.sessions.mutate(session_id, take)
        if first:
            await self._report_cancel(session, first[0])
        return bool(first)

    async def _report_cancel(self, session: TusSession, sequence: int) -> None:
        reason = session.message or "cancelled"
        await quietly(self.events_for(session, sequence).cancelled(reason, session.bytes_received))
        await self.clean_up(session)

    def _writer_alive(self, state: TusState, gone: Gone) -> bool:
        """Whether a request holds the lease and can still act on what the document says."""
        lease = state.lease
        return lease is not None and state.lease_alive(self.clock()) and not gone(lease.instance_id)

    async def after_cancel(
        self, session: TusSession, owner: str, events: TusEvents, new_tail: str | None
    ) -> None:
        """A PATCH stopped by a cancel: report it and remove what the upload stored."""
        if new_tail is not None:
            await self.drop(new_tail)
        current, _ = await self.sessions.load(session.session_id)
        if current.status == "cancelled":
            reason = current.message or "cancelled"
            await quietly(events.cancelled(reason, current.bytes_received))
        await self.release(session.session_id, owner, events.next_sequence)
        if current.status == "cancelled":
            await self.clean_up(current)

    async def expire(self, session_id: str, *, gone: Gone = _nobody) -> TusSession:
        """Expire the upload if its time is up and nobody writes to it (a request on an
        instance that is `gone` does not)."""
        session, _ = await self.expire_now(session_id, gone=gone)
        return session

    async def expire_now(self, session_id: str, *, gone: Gone) -> tuple[TusSession, bool]:
        """`expire`, saying whether this call expired it (of two at once, one did)."""
        first: list[int] = []

        def expire(current: TusSession) -> TusSession | None:
            first.clear()
            state = current.tus
            if current.status != "uploading" or state is None or self._writer_alive(state, gone):
                return None
            if self.clock() < current.expires_at:
                return None
            first.append(state.next_sequence)
            expired = msgspec.structs.replace(
                current,
                status="expired",
                message="the upload expired before it was complete",
                error_code="SESSION_EXPIRED",
            )
            return with_state(expired, lease=None, next_sequence=state.next_sequence + 1)

        session = await self.sessions.mutate(session_id, expire)
        if first and session.state.started_at is not None:
            events = self.events_for(session, first[0])
            message = "the upload expired before it was complete"
            await quietly(events.failed("TIMEOUT", message, session.bytes_received))
        return session, bool(first)

    async def release(self, session_id: str, owner: str, next_sequence: int) -> None:
        """Give the lease back, keeping the sequence numbers used so far."""

        def release(session: TusSession) -> TusSession | None:
            state = session.tus
            if state is None or state.lease is None or state.lease.owner != owner:
                return None
            # While the lease was held, only its holder numbered events: the rest of the
            # block it reserved can be handed out again.
            return with_state(session, lease=None, next_sequence=next_sequence)

        try:
            await self.sessions.mutate(session_id, release)
        except IngestError as error:
            # The lease then lapses on its own.
            log.warning("could not give back the lease of tus upload %s: %s", session_id, error)

    async def clean_up(self, session: TusSession) -> None:
        """Remove the parts and the tail of an upload that ended without completing."""
        state = session.tus
        offset = state.offset if state is not None else session.bytes_received
        try:
            upload_ids = set(await self.store.incomplete_uploads(session.s3_key))
            if state is not None and state.multipart_upload_id is not None:
                upload_ids.add(state.multipart_upload_id)
            for upload_id in upload_ids:
                await self.store.resume_multipart(session.s3_key, upload_id).abort()
            if state is None:
                await self.store.delete(self.tail_key(session.session_id, offset))
            for segment in segments_of(session.session_id, state) if state else []:
                await self.store.delete(segment.key)
            if state is not None and state.concat is not None:
                # A partial's stored piece, or a final joined but never recorded: nobody's file.
                await self.store.delete(session.s3_key)
            if state is not None:
                await self.sessions.mutate(session.session_id, _mark_cleaned)
        except IngestError as error:
            log.warning("could not clean up tus upload %s: %s", session.session_id, error)

    async def drop(self, key: str) -> None:
        try:
            await self.store.delete(key)
        except IngestError as error:
            log.warning("could not delete %s: %s", key, error)


def _mark_cleaned(session: TusSession) -> TusSession | None:
    if session.tus is None or session.tus.cleaned:
        return None
    return with_state(session, cleaned=True)


def _gone(status: str) -> IngestError:
    return UploadGone(f"the upload is {status}", details={"status": status})


async def quietly(emitting: Awaitable[None]) -> None:
    try:
        await emitting
    except Exception:
        # The state is recorded either way; the sink keeps what it can and logs the rest.
        log.warning("could not emit an event of a tus upload", exc_info=True)
