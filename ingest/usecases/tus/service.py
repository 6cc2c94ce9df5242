"""Resumable (tus) uploads: created, resumed, inspected and terminated through any instance.

A tus upload is an upload session (protocol "tus") whose document also holds
its resumable state (`state`); nothing lives on local disk, so the next
request may land on any instance. This facade holds what a request does:
creation (under the size, quota, format and file name rules every way in
shares, `ingest.usecases.admission`), HEAD, PATCH (the lease, a `PatchRun`,
and a lease keeper that carries a cancel from any instance to it), and
termination. Concatenation: a partial upload is created like any other (no
events, its bytes held against the quota as a piece, not an upload); a final
one (`create_final`) is checked, claimed and joined by a `FinalJoin` under
its own lease, like a PATCH. Before anything, a request resolves the
upload's state: an upload whose time is up is expired then (`lifecycle`),
one that ended is cleaned up if nobody did, and one whose last byte is stored
but which was never recorded as complete is completed.

How it fails: domain errors only. UploadGone (410) for an upload terminated,
failed or expired; SessionNotFound (404) for an unknown one; Forbidden (403)
for another user's; the refusals of the admission rules (FormatNotAllowed,
400, for a file name or media type no session may have); UploadLocked (409)
when another request does not let go in time; ServiceUnavailable (503) while
the server shuts down; for concatenation, the refusals of `partials` and
`concat` (404, 400), FinalUploadReadOnly (403) for a PATCH to a final upload,
SessionConflict (409) for a DELETE of a partial upload being joined, and a
failed join's StorageError (502).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar, cast

from infra import layout
from ingest.auth import Principal
from ingest.errors import (
    FinalUploadReadOnly,
    OffsetMismatch,
    ServiceUnavailable,
    SessionConflict,
    UploadGone,
)
from ingest.model import UploadResult
from ingest.pipeline.budget import MemoryBudget
from ingest.pipeline.config import PipelineConfig
from ingest.pipeline.ending import run_to_end
from ingest.pipeline.parts import plan_part_size
from ingest.ports import DocumentStore, EventSink, QuotaView
from ingest.usecases.admission import Admission, UploadLimits
from ingest.usecases.duplicates import DuplicateIndex
from ingest.usecases.inflight import InFlightUploads
from ingest.usecases.sessions import SessionService, utc_now
from ingest.usecases.tus.admission import PatchAdmission, check_partial_length
from ingest.usecases.tus.body import TusInterrupt
from ingest.usecases.tus.concat import JoinLimits
from ingest.usecases.tus.events import TusEvents
from ingest.usecases.tus.final import FinalJoin
from ingest.usecases.tus.joining import prepare_final, refuse_final
from ingest.usecases.tus.lease import Held, LeaseKeeper, LeaseTimes, acquire
from ingest.usecases.tus.lifecycle import Lifecycle
from ingest.usecases.tus.metadata import declared_from
from ingest.usecases.tus.patching import PatchRun
from ingest.usecases.tus.protocol import Concat, PatchRequest, UploadInfo
from ingest.usecases.tus.protocol import Creation as Creation  # where the HTTP edge finds it
from ingest.usecases.tus.running import RunningHashes
from ingest.usecases.tus.state import TusSession, TusSessions, TusState
from ingest.usecases.tus.store import TusStore
from ingest.usecases.tus.tail import read_segments, segments_of
from ingest.usecases.uploads import ActiveUploads

ENDED = frozenset({"cancelled", "failed", "expired"})
T = TypeVar("T")


@dataclass(frozen=True)
class TusConfig:
    session_ttl_seconds: float
    """Upload-Expires is this long after creation and after every PATCH."""
    lease: LeaseTimes = field(
        default_factory=lambda: LeaseTimes(lease_seconds=30.0, poll_seconds=0.5, wait_seconds=20.0)
    )
    join: JoinLimits = field(default_factory=JoinLimits)
    """What a final upload can join (S3's multipart limits)."""


class TusService:
    def __init__(
        self,
        *,
        sessions: SessionService,
        documents: DocumentStore,
        duplicates: DuplicateIndex,
        store: TusStore,
        sink: EventSink,
        quota: QuotaView,
        budget: MemoryBudget,
        pipeline: PipelineConfig,
        limits: UploadLimits,
        active: ActiveUploads,
        instance_id: str,
        config: TusConfig,
        clock: Callable[[], datetime] = utc_now,
        in_flight: InFlightUploads | None = None,
    ) -> None:
        self.sessions = TusSessions(sessions, documents, clock)
        self.store = store
        self.budget = budget
        self.pipeline = pipeline
        self.limits = limits
        self.rules = Admission.over(limits, quota, sink, in_flight)
        self.admission = PatchAdmission(self.rules, clock)
        self.lifecycle = Lifecycle(self.sessions, store, sink, duplicates, pipeline, limits, clock)
        self.running = RunningHashes()
        self._quota = quota
        self._active = active
        self._instance_id = instance_id
        self._config = config
        self._clock = clock

    @property
    def session_ttl(self) -> float:
        return self._config.session_ttl_seconds

    @property
    def config(self) -> TusConfig:
        return self._config

    @property
    def instance_id(self) -> str:
        return self._instance_id

    def wall_clock(self) -> datetime:
        return self._clock()

    # Creation and inspection.

    async def create(self, principal: Principal, creation: Creation) -> TusSession:
        length = creation.length
        if creation.partial:
            check_partial_length(length, self.limits.max_size)
        else:
            self.rules.check_upload_length(length)
        self.rules.check_quota(principal.user_id, length, new_upload=True)
        declared = declared_from(creation.metadata)
        # The same format and file name policy as any other session.
        file_format = self.rules.requested_format(
            declared.file_format, declared.filename, field="Upload-Metadata"
        )
        session_id = uuid.uuid4().hex
        if creation.partial:
            # Its bytes count against the quota, but it is no upload of its own.
            self.rules.in_flight.hold(principal.user_id, session_id, length, piece=True)
        else:
            # Checked again and held with no await between: open uploads count on this instance.
            self.rules.admit(principal.user_id, session_id, length)
        session = self.new_session(
            principal,
            session_id,
            creation,
            file_format,
            TusState(
                upload_length=length,
                part_size=plan_part_size(length, self.pipeline.part_size, self.limits.max_size),
                video_id=str(uuid.uuid4()),
                analysis_id=str(uuid.uuid4()),
                metadata_header=creation.metadata_header,
                concat="partial" if creation.partial else None,
            ),
        )
        try:
            await self.sessions.create(session)
        except BaseException:
            self.rules.in_flight.release(session_id)
            raise
        return session

    def new_session(
        self,
        principal: Principal,
        session_id: str,
        creation: Creation,
        file_format: str | None,
        state: TusState,
        message: str = "waiting for the first bytes",
    ) -> TusSession:
        declared = declared_from(creation.metadata)
        now = self._clock()
        # A partial upload's object is a piece, not a file of the user's: kept beside the tails.
        key = (
            layout.tus_partial_key(session_id)
            if state.concat == "partial"
            else layout.object_key(principal.user_id, session_id, declared.filename)
        )
        return TusSession(
            session_id=session_id,
            user_id=principal.user_id,
            filename=declared.filename,
            expected_file_size=state.upload_length,
            file_format=file_format,
            file_hash=None,
            auto_analyze=declared.auto_analyze,
            priority=declared.priority,
            metadata=dict(creation.metadata),
            dashboard_context=None,
            protocol="tus",
            s3_key=key,
            created_at=now,
            expires_at=now + timedelta(seconds=self.session_ttl),
            # Never "active": the one-shot PUT must not claim a tus upload.
            status="uploading",
            message=message,
            instance_id=self._instance_id,
            updated_at=now,
            tus=state,
        )

    async def create_final(
        self, principal: Principal, creation: Creation, concat: Concat
    ) -> TusSession:
        """Join the caller's partial uploads into one upload (see `joining`); the completed
        final, once its file is stored and reported."""
        self._refuse_when_draining()
        return await self._join(await prepare_final(self, principal, creation, concat))

    async def _join(self, join: FinalJoin) -> TusSession:
        session_id = join.session_id
        interrupt = TusInterrupt()
        if self._active.draining:
            # The server began to shut down meanwhile: end the final, give its pieces back.
            await join.abandon()
            refuse_final(self.rules.in_flight, session_id, join.partials)
            self._refuse_when_draining()
        task = asyncio.create_task(join.run(), name=f"tus-final-{session_id}")
        self._active.add(session_id, cast("asyncio.Task[UploadResult]", task), interrupt)
        completed: TusSession | None = None
        try:
            async with self._keeping(join.held, join.events, interrupt, task):
                completed = await self._await(task, interrupt)
                return completed
        finally:
            self._active.remove(session_id)
            if completed is not None:
                self.rules.in_flight.settled(session_id, completed.bytes_received)
            else:
                refuse_final(self.rules.in_flight, session_id, join.partials)

    async def info(self, session_id: str, principal: Principal) -> UploadInfo:
        session = await self._touch(session_id, principal)
        state = session.state
        if (
            session.status == "uploading"
            and state.complete
            and not state.stored
            and state.concat != "final"
            and not state.lease_alive(self._clock())
        ):
            # The request that stored the last byte could not complete the upload: do it
            # now, or a client told "all bytes are there" would never see it completed.
            session = await self._complete_later(session, principal)
        return self.info_of(session)

    def info_of(self, session: TusSession) -> UploadInfo:
        state = session.state
        return UploadInfo(
            offset=state.offset,
            length=state.upload_length,
            metadata_header=state.metadata_header,
            expires_at=None if session.status == "completed" else session.expires_at,
            concat=state.concat_header if state.concat == "final" else state.concat,
            joining=state.concat == "final" and session.status != "completed",
        )

    # PATCH.

    async def precheck(self, session_id: str, principal: Principal, request: PatchRequest) -> None:
        """Everything that can refuse a PATCH before its body is read (Expect: 100-continue)."""
        session = await self._touch(session_id, principal)
        if _finished(session):
            self.admission.for_completed(session, request)
        else:
            self.admission.for_patch(request)(session)

    async def patch(
        self,
        session_id: str,
        principal: Principal,
        request: PatchRequest,
        body: AsyncIterator[bytes],
    ) -> UploadInfo:
        self._refuse_when_draining()
        session = await self._touch(session_id, principal)
        if _finished(session):
            self.admission.for_completed(session, request)
            return self.info_of(session)
        held = await self._acquire(session_id, principal, self.admission.for_patch(request))
        if self._active.draining:
            await self.lifecycle.release(session_id, held.owner, held.first_sequence)
            self._refuse_when_draining()
        events = self.lifecycle.events_for(held.session, held.first_sequence)
        run = PatchRun(self, held, request, body, events)
        interrupt = run.interrupt
        task = asyncio.create_task(run.run(), name=f"tus-{session_id}")
        # ActiveUploads only waits for, and interrupts, the task: its result type does not matter.
        self._active.add(session_id, cast("asyncio.Task[UploadResult]", task), interrupt)
        in_flight = self.rules.in_flight
        user_id = held.session.user_id
        piece = held.session.state.concat == "partial"
        # Counted here too when another instance created it (the upload resumed here).
        in_flight.streaming(user_id, session_id, held.session.state.upload_length, piece=piece)
        info: UploadInfo | None = None
        try:
            async with self._keeping(held, events, interrupt, task):
                info = await self._await(task, interrupt)
                return info
        finally:
            self._active.remove(session_id)
            if info is not None and info.length is not None and info.offset >= info.length:
                if piece:
                    # Its bytes stay counted until a final joins it (or it expires).
                    in_flight.hold(user_id, session_id, info.length, piece=True)
                else:
                    # Complete: counted here until the quota consumer's snapshot charges it.
                    in_flight.settled(session_id, info.length)
            else:
                # Still open: held until the next PATCH, the end, or the session's expiry.
                offset = info.offset if info is not None else None
                in_flight.hold(user_id, session_id, offset, piece=piece)

    async def _await(self, task: asyncio.Task[T], interrupt: TusInterrupt) -> T:
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled():
                if interrupt.reason == "cancelled":
                    raise UploadGone(
                        "the upload was terminated", details={"status": "cancelled"}
                    ) from None
                raise ServiceUnavailable("the request was stopped; resume from HEAD") from None
            # This request itself is being cancelled (shutdown): let it commit what it has.
            if interrupt.valve is not None:
                interrupt.valve.close("shutdown")
            await run_to_end(
                asyncio.wait({task}),
                within=self.pipeline.abort_timeout,
                what=f"saving tus request {task.get_name()}",
            )
            raise

    # Termination.

    async def terminate(self, session_id: str, principal: Principal) -> None:
        """Stop the upload for good; a PATCH writing to it stops, wherever it runs."""
        session = await self._touch(session_id, principal)
        if session.status == "completed":
            raise SessionConflict(
                "the upload is complete; it can no longer be terminated",
                details={"status": "completed"},
            )
        joined_into = session.state.joined_into
        if joined_into is not None:
            raise SessionConflict(
                f"this partial upload is being joined into upload {joined_into}",
                details={"status": session.status, "joined_into": joined_into},
            )
        await self.lifecycle.cancel(session_id, "terminated by the client")
        self._active.interrupt(session_id, "cancelled")
        self.rules.in_flight.release(session_id)

    # Helpers of a running PATCH.

    def quota_remaining(self, user_id: str, upload_id: str) -> int:
        """What the upload may reach: the snapshot's remaining bytes less what this
        instance's other uploads in flight hold."""
        return self.rules.usage(user_id, excluding=upload_id).bytes_remaining

    async def read_tail(self, session: TusSession) -> bytes:
        """The committed bytes after the last full part (b"" at a part boundary)."""
        return await read_segments(self.store, segments_of(session.session_id, session.state))

    # What a request finds.

    async def _touch(self, session_id: str, principal: Principal) -> TusSession:
        session = await self.sessions.owned(session_id, principal)
        now = self._clock()
        state = session.tus
        lease_alive = state is not None and state.lease_alive(now)
        if session.status == "uploading" and not lease_alive and now >= session.expires_at:
            session = await self.lifecycle.expire(session_id)
        if session.status in ENDED:
            state = session.tus
            if not lease_alive and (state is None or not state.cleaned):
                await self.lifecycle.clean_up(session)
            raise UploadGone(f"the upload is {session.status}", details={"status": session.status})
        return session

    async def _complete_later(self, session: TusSession, principal: Principal) -> TusSession:
        def admit(current: TusSession) -> TusSession:
            if current.status != "uploading" or not current.state.complete:
                raise OffsetMismatch("the upload changed", details={"offset": current.state.offset})
            return current

        try:
            held = await self._acquire(session.session_id, principal, admit)
        except OffsetMismatch:
            current, _ = await self.sessions.load(session.session_id)
            return current
        events = self.lifecycle.events_for(held.session, held.first_sequence)
        task = asyncio.current_task()
        assert task is not None
        length = held.session.state.upload_length
        sha256 = None if length is None else self.running.sha256_of(session.session_id, length)
        async with self._keeping(held, events, TusInterrupt(completing=True), task):
            completed = await self.lifecycle.complete(
                held.session, held.owner, events, sha256=sha256
            )
        self.running.forget(session.session_id)
        return completed

    async def _acquire(
        self, session_id: str, principal: Principal, admit: Callable[[TusSession], TusSession]
    ) -> Held:
        return await acquire(
            self.sessions,
            session_id,
            principal,
            admit=admit,
            instance_id=self._instance_id,
            times=self._config.lease,
            clock=self._clock,
        )

    @contextlib.asynccontextmanager
    async def _keeping(
        self,
        held: Held,
        events: TusEvents,
        interrupt: TusInterrupt,
        task: asyncio.Task[object] | asyncio.Task[UploadInfo],
    ) -> AsyncIterator[None]:
        """Renew the lease and watch the document while the request runs."""
        valve = interrupt.valve
        keeper = asyncio.create_task(
            LeaseKeeper(
                self.sessions,
                held,
                times=self._config.lease,
                clock=self._clock,
                next_sequence=lambda: events.next_sequence,
                on_cancelled=lambda: interrupt.cancel(task, "cancelled"),
                on_release=valve.close if valve is not None else lambda reason: None,
            ).run(),
            name=f"tus-lease-{held.session.session_id}",
        )
        try:
            yield
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

    def _refuse_when_draining(self) -> None:
        if self._active.draining:
            raise ServiceUnavailable("the server is shutting down; resume on another instance")


def _finished(session: TusSession) -> bool:
    """Nothing more can be written: completed, a partial upload stored whole, or a final
    (PATCH on which is refused, FinalUploadReadOnly)."""
    state = session.state
    if state.concat == "final":
        raise FinalUploadReadOnly(
            "a final upload is made of its partial uploads; PATCH those instead",
            details={"upload_concat": state.concat_header},
        )
    return session.status == "completed" or state.stored
