"""Resumable (tus) uploads: created, resumed, inspected and terminated through any instance.

A tus upload is an upload session (protocol "tus") whose document also holds
its resumable state (`state`); nothing lives on local disk, so the next
request may land on any instance. This facade is what the HTTP edge calls,
one method a request, each first resolving the caller's upload (`resolving`:
expired, cleaned up or completed late as its state requires): creation
(`creating`), HEAD, PATCH (a `PatchRun` under the upload's lease, run by
`leased.LeasedRunner`, with the upload's bytes counted in flight while it
streams and after), termination, and concatenation's final upload
(`create_final`: started by `joining`, joined by a `FinalJoin` under its own
lease, like a PATCH). It also gives a running PATCH what it needs of the
service (`patching.PatchHost`).

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

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime

from ingest.auth import Principal
from ingest.errors import SessionConflict
from ingest.pipeline.budget import MemoryBudget
from ingest.pipeline.config import PipelineConfig
from ingest.ports import DocumentStore, EventSink, QuotaView
from ingest.usecases.admission import Admission, UploadLimits
from ingest.usecases.duplicates import DuplicateIndex
from ingest.usecases.inflight import InFlightUploads
from ingest.usecases.sessions import SessionService, utc_now
from ingest.usecases.tus.admission import PatchAdmission
from ingest.usecases.tus.concat import JoinLimits
from ingest.usecases.tus.creating import UploadCreator
from ingest.usecases.tus.joining import prepare_final, run_final
from ingest.usecases.tus.lease import LeaseTimes
from ingest.usecases.tus.leased import LeasedRunner
from ingest.usecases.tus.lifecycle import Lifecycle
from ingest.usecases.tus.patching import PatchRun
from ingest.usecases.tus.protocol import Concat, PatchRequest, UploadInfo
from ingest.usecases.tus.protocol import Creation as Creation  # where the HTTP edge finds it
from ingest.usecases.tus.resolving import UploadResolver, finished
from ingest.usecases.tus.running import RunningHashes
from ingest.usecases.tus.state import TusSession, TusSessions
from ingest.usecases.tus.store import TusStore
from ingest.usecases.tus.tail import read_segments, segments_of
from ingest.usecases.uploads import ActiveUploads


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
        self.runner = LeasedRunner(
            sessions=self.sessions,
            active=active,
            pipeline=pipeline,
            instance_id=instance_id,
            times=config.lease,
            clock=clock,
        )
        self.resolver = UploadResolver(
            sessions=self.sessions,
            lifecycle=self.lifecycle,
            running=self.running,
            runner=self.runner,
            clock=clock,
        )
        self.creator = UploadCreator(
            sessions=self.sessions,
            rules=self.rules,
            limits=limits,
            pipeline=pipeline,
            instance_id=instance_id,
            session_ttl=config.session_ttl_seconds,
            clock=clock,
        )
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
        return await self.creator.create(principal, creation)

    async def create_final(
        self, principal: Principal, creation: Creation, concat: Concat
    ) -> TusSession:
        """Join the caller's partial uploads into one upload (see `joining`); the completed
        final, once its file is stored and reported."""
        self.runner.refuse_when_draining()
        join = await prepare_final(self, principal, creation, concat)
        return await run_final(join, self.runner, self.rules.in_flight)

    async def info(self, session_id: str, principal: Principal) -> UploadInfo:
        session = await self.resolver.resolve(session_id, principal)
        return self.info_of(await self.resolver.completed_if_pending(session, principal))

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

    async def precheck(
        self, session_id: str, principal: Principal, request: PatchRequest
    ) -> TusSession:
        """Everything that can refuse a PATCH before its body is read (Expect: 100-continue);
        the upload as resolved, for the PATCH itself (`patch`'s `resolved`)."""
        session = await self.resolver.resolve(session_id, principal)
        if finished(session):
            self.admission.for_completed(session, request)
        else:
            self.admission.for_patch(request)(session)
        return session

    async def patch(
        self,
        session_id: str,
        principal: Principal,
        request: PatchRequest,
        body: AsyncIterator[bytes],
        *,
        resolved: TusSession | None = None,
    ) -> UploadInfo:
        """Write `body` at the request's offset under the upload's lease.

        `resolved` is what `precheck` found for this very request and caller: not read again.
        It may be a moment old, which is safe: an upload seen completed stays completed,
        and everything else is judged again on the document the lease is taken on.
        """
        self.runner.refuse_when_draining()
        if resolved is None or resolved.session_id != session_id:
            resolved = await self.resolver.resolve(session_id, principal)
        session = resolved
        if finished(session):
            self.admission.for_completed(session, request)
            return self.info_of(session)
        held = await self.runner.acquire(session_id, principal, self.admission.for_patch(request))
        if self.runner.draining:
            await self.lifecycle.release(session_id, held.owner, held.first_sequence)
            self.runner.refuse_when_draining()
        events = self.lifecycle.events_for(held.session, held.first_sequence)
        run = PatchRun(self, held, request, body, events)
        in_flight = self.rules.in_flight
        user_id = held.session.user_id
        piece = held.session.state.concat == "partial"
        # Counted here too when another instance created it (the upload resumed here).
        in_flight.streaming(user_id, session_id, held.session.state.upload_length, piece=piece)
        info: UploadInfo | None = None
        try:
            info = await self.runner.run(
                run.run(),
                name=f"tus-{session_id}",
                held=held,
                events=events,
                interrupt=run.interrupt,
            )
            return info
        finally:
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

    # Termination.

    async def terminate(self, session_id: str, principal: Principal) -> None:
        """Stop the upload for good; a PATCH writing to it stops, wherever it runs."""
        session = await self.resolver.resolve(session_id, principal)
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
