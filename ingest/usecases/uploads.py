"""One upload from claimed session to stored object, whichever way the body arrives.

Claims the session (so it is used once), holds the body to the admission rules
every way in shares (`ingest.usecases.admission`), streams it through the pipeline,
records the file in the duplicate index before its completed event (a second
copy of a file the user stored is removed and names the original), records the
outcome in the session, and keeps a
registry of uploads in flight so that a cancel (taken here or relayed from
another instance, see `ingest.usecases.cancels`) and shutdown can stop them cleanly.
Raises the domain errors of `ingest.errors`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal

from ingest.auth import Principal
from ingest.errors import (
    ChecksumMismatch,
    IngestError,
    ServiceUnavailable,
    SessionConflict,
    SessionExpired,
    UploadCancelledError,
)
from ingest.model import SessionStatus, UploadResult, UploadSession, UploadTarget
from ingest.pipeline.budget import MemoryBudget
from ingest.pipeline.config import PipelineConfig
from ingest.pipeline.stream import Interrupt, stream_upload
from ingest.ports import EventSink, ObjectStore, QuotaStatus, QuotaView
from ingest.usecases.admission import Admission, UploadLimits
from ingest.usecases.cancels import CancelRelay
from ingest.usecases.duplicates import DuplicateIndex, StoredFile
from ingest.usecases.inflight import InFlightUploads
from ingest.usecases.instances import Heartbeats
from ingest.usecases.sessions import SessionService
from ingest.usecases.sweep.settle import Settler

log = logging.getLogger(__name__)


@dataclass
class _InFlight:
    task: asyncio.Task[UploadResult]
    interrupt: Interrupt
    body: _CountedBody | None = None


class _CountedBody:
    """The request body as the pipeline pulls it, counted for `GET /v1/uploads/{id}` meanwhile."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self.received = 0

    def __aiter__(self) -> _CountedBody:
        return self

    async def __anext__(self) -> bytes:
        chunk = await anext(self._chunks)
        self.received += len(chunk)
        return chunk


@dataclass
class ActiveUploads:
    """Uploads streaming in this process, for cancel and graceful shutdown."""

    draining: bool = False
    _uploads: dict[str, _InFlight] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._uploads)

    def add(
        self,
        session_id: str,
        task: asyncio.Task[UploadResult],
        interrupt: Interrupt,
        body: _CountedBody | None = None,
    ) -> None:
        if self.draining:
            raise ServiceUnavailable("the server is shutting down; retry on another instance")
        self._uploads[session_id] = _InFlight(task, interrupt, body)

    def bytes_received(self, session_id: str) -> int | None:
        """Bytes of the body received so far, for an upload streaming in this process."""
        in_flight = self._uploads.get(session_id)
        return in_flight.body.received if in_flight and in_flight.body else None

    def remove(self, session_id: str) -> None:
        self._uploads.pop(session_id, None)

    def interrupt(self, session_id: str, reason: Literal["cancelled", "shutdown"]) -> bool:
        in_flight = self._uploads.get(session_id)
        if in_flight is None or in_flight.task.done():
            return False
        in_flight.interrupt.cancel(in_flight.task, reason)
        return True

    async def drain(self, grace_seconds: float) -> int:
        """Refuse new uploads, give running ones `grace_seconds`, then stop the rest.

        Returns how many uploads had to be stopped.
        """
        self.draining = True
        tasks = [u.task for u in self._uploads.values()]
        if not tasks:
            return 0
        _, pending = await asyncio.wait(tasks, timeout=grace_seconds)
        for session_id, in_flight in list(self._uploads.items()):
            if in_flight.task in pending:
                self.interrupt(session_id, "shutdown")
        await asyncio.gather(*pending, return_exceptions=True)
        return len(pending)


class UploadService:
    def __init__(
        self,
        *,
        sessions: SessionService,
        duplicates: DuplicateIndex,
        store: ObjectStore,
        sink: EventSink,
        quota: QuotaView,
        budget: MemoryBudget,
        pipeline: PipelineConfig,
        limits: UploadLimits,
        active: ActiveUploads,
        instance_id: str,
        cancels: CancelRelay,
        in_flight: InFlightUploads | None = None,
        settler: Settler | None = None,
        instances: Heartbeats | None = None,
    ) -> None:
        self._settler = settler
        self._instances = instances
        self._sessions = sessions
        self._duplicates = duplicates
        self._store = store
        self._sink = sink
        self.admission = Admission.over(limits, quota, sink, in_flight)
        self._budget = budget
        self._pipeline = pipeline
        self._active = active
        self._instance_id = instance_id
        self._cancels = cancels

    @property
    def limits(self) -> UploadLimits:
        return self.admission.limits

    async def precheck(
        self, session_id: str, principal: Principal, declared_size: int | None
    ) -> UploadSession:
        """Everything that can refuse a body before any of it is read (for Expect: 100-continue)."""
        session = await self._sessions.get_owned(session_id, principal)
        if session.status == "expired":
            raise SessionExpired(f"upload session {session_id} expired at {session.expires_at}")
        if session.status != "active":
            raise SessionConflict(
                f"upload session {session_id} was already used (status {session.status})",
                details={"status": session.status},
            )
        self.admission.check_body_size(declared_size, session.expected_file_size)
        self.admission.check_quota(
            session.user_id,
            declared_size or session.expected_file_size,
            new_upload=True,
            upload_id=session_id,
        )
        return session

    async def upload(
        self,
        session_id: str,
        principal: Principal,
        body: AsyncIterator[bytes],
        *,
        content_type: str | None,
        declared_size: int | None,
        declared_sha256: frozenset[str] = frozenset(),
    ) -> tuple[UploadSession, UploadResult]:
        """Stream `body` into the session's object; `declared_sha256` are digests (hex) the
        request declared for it besides the session's `file_hash`: all must be the body's."""
        if self._active.draining:
            raise ServiceUnavailable("the server is shutting down; retry on another instance")
        # Before the claim: refused for want of room for its events, the session stays usable.
        self.admission.room()
        session, version = await self._sessions.claim(
            session_id, principal, instance_id=self._instance_id
        )
        # Recorded before the completed event is sent: a completed upload whose event is lost
        # later (a journal's disk) is found by `ingest reconcile`, event and all.
        completion = self._sessions.completion_recorder(session, version)
        in_flight = self.admission.in_flight
        try:
            size = self.admission.check_body_size(declared_size, session.expected_file_size)
            expected_sha256 = _one_sha256(session.file_hash, declared_sha256)
            quota = self.admission.check_quota(
                session.user_id, size, new_upload=True, upload_id=session_id
            )
        except IngestError as error:
            in_flight.release(session_id)
            await self._sessions.finish(
                session_id, "failed", message=error.message, error_code=error.error_code
            )
            raise
        # Held from the check on, with no await between: the body counts as in flight here
        # (whichever instance created the session) until it ends, below.
        in_flight.streaming(session.user_id, session_id, size)
        target = self._target(session, content_type, size, quota, expected_sha256)
        interrupt = Interrupt()
        counted = _CountedBody(body)
        task = asyncio.create_task(
            stream_upload(
                target,
                counted,
                store=self._store,
                sink=self._sink,
                budget=self._budget,
                config=self._pipeline,
                interrupt=interrupt,
                claim_original=lambda result: self._duplicates.claim(
                    StoredFile(
                        user_id=session.user_id,
                        session_id=session_id,
                        filename=session.filename,
                        result=result,
                    )
                ),
                meter=lambda received: self.admission.charge(session.user_id, session_id, received),
                record_completion=completion.record,
            ),
            name=f"upload-{session_id}",
        )
        # No await since the claim: a cancel relayed here from now on finds the upload.
        self._active.add(session_id, task, interrupt, counted)
        result: UploadResult | None = None
        try:
            result = await self._await_pipeline(task, interrupt)
        except IngestError as error:
            await self._record_failure(session_id, error)
            raise
        finally:
            self._active.remove(session_id)
            if result is not None and result.duplicate_of is None:
                # Charged by the quota consumer soon: counted here until its snapshot says so.
                in_flight.settled(session_id, result.size_bytes)
            else:
                in_flight.release(session_id)
        return completion.session, result

    async def _await_pipeline(
        self, task: asyncio.Task[UploadResult], interrupt: Interrupt
    ) -> UploadResult:
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled() and interrupt.reason == "cancelled":
                raise UploadCancelledError("the upload was cancelled") from None
            if task.cancelled() and interrupt.reason == "shutdown":
                raise ServiceUnavailable(
                    "the server shut down before the upload finished; start a new session"
                ) from None
            if not task.done():
                # This request itself is being cancelled (shutdown): stop the pipeline cleanly.
                interrupt.reason = interrupt.reason or "shutdown"
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
            raise

    async def cancel(self, session_id: str, principal: Principal) -> UploadSession:
        """Cancel the session, and stop its upload wherever it streams.

        A session nobody streams (never claimed, or its streamer is gone) is settled
        here: what it holds aborted, `upload.cancelled` emitted (or, should that fail,
        by the next sweep).
        """
        session = await self._sessions.cancel(
            session_id, principal, reports_here=self._nobody_streams
        )
        self.admission.in_flight.release(session_id)
        if session.unreported and self._settler is not None:
            # Failing, it is left to the sweep, which retries it; the cancel itself holds.
            await self._settler.settle(session)
        elif not self._active.interrupt(session_id, "cancelled"):
            # Sent again when a cancel is repeated, in case the first one could not send it.
            await self._cancels.forward(session)
        return session

    async def _nobody_streams(self, session: UploadSession) -> bool:
        if self._settler is None:
            return False
        if session.status == "active":
            return True
        streamer = session.instance_id
        if streamer is None or streamer == self._instance_id or self._instances is None:
            return False
        # One that writes no heartbeat (an earlier version) is told by a marker, as before.
        return session.streamer_beats and not await self._instances.is_alive(streamer)

    async def relay_cancels(self) -> None:
        """Stop the uploads of this instance cancelled on another, until cancelled."""
        await self._cancels.run(lambda session_id: self._active.interrupt(session_id, "cancelled"))

    async def _record_failure(self, session_id: str, error: IngestError) -> None:
        status: SessionStatus = "cancelled" if isinstance(error, UploadCancelledError) else "failed"
        try:
            await self._sessions.finish(
                session_id, status, message=error.message, error_code=error.error_code
            )
        except IngestError as record_error:
            log.error("could not record the end of session %s: %s", session_id, record_error)

    def _target(
        self,
        session: UploadSession,
        content_type: str | None,
        declared_size: int | None,
        quota: QuotaStatus,
        expected_sha256: str | None,
    ) -> UploadTarget:
        return UploadTarget(
            upload_id=session.session_id,
            user_id=session.user_id,
            bucket=self._store.bucket,
            s3_key=session.s3_key,
            filename=session.filename,
            content_type=content_type,
            declared_format=session.file_format,
            allowed_formats=self.limits.allowed_formats,
            protocol=session.protocol,
            priority=session.priority,
            auto_analyze=session.auto_analyze,
            metadata=session.metadata,
            dashboard_context=session.dashboard_context,
            declared_size=declared_size,
            max_size=min(self.limits.max_size, session.expected_file_size or self.limits.max_size),
            min_size=self.limits.min_size,
            quota_bytes_remaining=quota.bytes_remaining,
            expected_sha256=expected_sha256,
        )


def _one_sha256(file_hash: str | None, declared: frozenset[str]) -> str | None:
    """The one SHA-256 the body must have; ChecksumMismatch when the declarations disagree
    (no body can match two), before any byte is read."""
    wanted = {digest.lower() for digest in declared} | ({file_hash.lower()} if file_hash else set())
    if len(wanted) > 1:
        raise ChecksumMismatch(
            "the SHA-256 digests declared for this body disagree (file_hash, Repr-Digest, "
            "Content-Digest): no body can match them all",
            details={"declared_sha256": sorted(wanted)},
        )
    return next(iter(wanted), None)
