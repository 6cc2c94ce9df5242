"""Upload sessions shared by every instance, stored as JSON documents with compare-and-swap.

A session is created `active`, claimed once (`uploading`) by the instance that
receives its body, and ends `completed`, `failed` or `cancelled`; an `active`
session past its expiry reads as `expired` (and is written so by the sweep).
Each session also has an entry in the index of open sessions (`layout.open_session_entry`)
from its creation until the sweep finds it ended and cleaned, so that a sweep
reads the sessions that may need it, not every session ever made. Every transition is a
compare-and-swap on the document's version, so two instances can never both
claim one session and a cancel from any instance is seen by the streamer.
Raises SessionNotFound / SessionExpired / Forbidden / SessionConflict (the
session was used, also when another request claimed it first). A lost
compare-and-swap (VersionConflict) is retried on the fresh document by `finish`
and `cancel`, and passed on by `update`. To spare a read on the way of an
upload, a claim of a session this process created, and the end of one it
claimed, write over the version they know: the compare-and-swap still decides,
and a session changed meanwhile is read again.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from infra import layout
from ingest.auth import Principal
from ingest.errors import (
    Forbidden,
    SessionConflict,
    SessionExpired,
    SessionNotFound,
    VersionConflict,
)
from ingest.model import TERMINAL_STATUSES, SessionStatus, UploadResult, UploadSession
from ingest.ports import DocumentStore
from schemas import Event, UploadCompleted, UploadProtocol
from schemas.api import CreateUploadRequest

ENDED_STATUSES: frozenset[str] = TERMINAL_STATUSES | {"expired"}
"""Statuses a session never leaves (an `active` one past its expiry is not written yet)."""

_RECENT_SESSIONS = 1024
"""Sessions created here kept for their claim (the oldest forgotten first): a claim of one
forgotten, or created on another instance, reads it first."""
_RECENT_MAX_BYTES = 8192
"""A session document larger than this (much metadata) is not kept."""

_SESSION_ID = re.compile(r"^[0-9a-f]{32}$")
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(UploadSession)


def utc_now() -> datetime:
    return datetime.now(UTC)


class SessionService:
    def __init__(
        self,
        documents: DocumentStore,
        *,
        ttl_seconds: float,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._documents = documents
        self._ttl = timedelta(seconds=ttl_seconds)
        self._clock = clock
        self._recent: OrderedDict[str, tuple[UploadSession, str]] = OrderedDict()
        """Sessions this process created and nobody claimed yet, with the version written."""

    async def create(
        self,
        principal: Principal,
        request: CreateUploadRequest,
        *,
        protocol: UploadProtocol,
        file_format: str | None,
        session_id: str | None = None,
    ) -> UploadSession:
        """A new active session; `session_id` when the caller needed the id before (a
        quota hold), else a fresh one."""
        now = self._clock()
        session_id = session_id or new_session_id()
        session = UploadSession(
            session_id=session_id,
            user_id=principal.user_id,
            filename=request.filename,
            expected_file_size=request.expected_file_size,
            file_format=file_format,
            file_hash=request.file_hash.lower() if request.file_hash else None,
            auto_analyze=request.auto_analyze,
            priority=request.priority,
            metadata=dict(request.metadata or {}),
            dashboard_context=request.dashboard_context,
            protocol=protocol,
            s3_key=layout.object_key(principal.user_id, session_id, request.filename),
            created_at=now,
            expires_at=now + self._ttl,
            updated_at=now,
        )
        version, size = await self.store_new(session)
        if size <= _RECENT_MAX_BYTES:
            self._recent[session_id] = (session, version)
            if len(self._recent) > _RECENT_SESSIONS:
                self._recent.popitem(last=False)
        return session

    async def store_new(self, session: UploadSession, *, listed: bool = True) -> tuple[str, int]:
        """Persist a session built elsewhere (an answered duplicate, a tus creation); the
        version and size of its document. One not `listed` is left out of the user's list
        of sessions (it is reached by its id only)."""
        data = _encoder.encode(session)
        writes = [self._documents.create(session_key(session.session_id), data)]
        if listed:
            writes.append(
                self._documents.create(
                    layout.user_session_entry(session.user_id, session.session_id), b""
                )
            )
        if session.status not in TERMINAL_STATUSES:
            # Before anyone learns the id, so nothing can be stored under a session the sweep
            # cannot find; an entry whose session is missing is only removed.
            writes.append(
                self._documents.create(layout.open_session_entry(session.session_id), b"")
            )
        # At once: nobody learns the id before all are written, and a listing skips an entry
        # whose session is missing, so no order among them matters.
        version, *_ = await asyncio.gather(*writes)
        return version, len(data)

    async def load(self, session_id: str) -> tuple[UploadSession, str]:
        if not _SESSION_ID.match(session_id):
            raise SessionNotFound(f"no upload session {session_id!r}")
        stored = await self._documents.read(session_key(session_id))
        if stored is None:
            raise SessionNotFound(f"no upload session {session_id!r}")
        return _decoder.decode(stored.data), stored.version

    async def find(self, session_id: str) -> UploadSession | None:
        """The stored session, or None when there is none (any more)."""
        try:
            session, _ = await self.load(session_id)
        except SessionNotFound:
            return None
        return session

    async def session_ids(self) -> list[str]:
        """The id of every stored session, for passes over all of them."""
        prefix, suffix = layout.SESSIONS_PREFIX, layout.SESSION_SUFFIX
        keys = await self._documents.list_keys(prefix)
        return [key[len(prefix) : -len(suffix)] for key in keys if key.endswith(suffix)]

    def completion_recorder(self, claimed: UploadSession, version: str) -> CompletionRecorder:
        """A recorder for the upload of `claimed`, which `claim` returned with `version`."""
        return CompletionRecorder(self, claimed, version)

    async def get_owned(self, session_id: str, principal: Principal) -> UploadSession:
        session, _ = await self.load(session_id)
        check_owner(session, principal)
        return self.with_effective_status(session)

    def with_effective_status(self, session: UploadSession) -> UploadSession:
        if session.status == "active" and self._clock() >= session.expires_at:
            return msgspec.structs.replace(session, status="expired", message="the session expired")
        return session

    async def claim(
        self, session_id: str, principal: Principal, *, instance_id: str
    ) -> tuple[UploadSession, str]:
        """Move an active session to `uploading`; only one caller ever wins.

        A session this process created is claimed over the version it wrote, without
        reading it first; when it changed since (a cancel, a claim elsewhere), the
        compare-and-swap fails and it is read and judged afresh.
        """
        created = self._recent.pop(session_id, None)
        if created is not None:
            with contextlib.suppress(VersionConflict):
                return await self._claim(*created, principal, instance_id)
        session, version = await self.load(session_id)
        try:
            return await self._claim(session, version, principal, instance_id)
        except VersionConflict:
            raise SessionConflict(
                f"upload session {session_id} was claimed by another request"
            ) from None

    async def _claim(
        self, session: UploadSession, version: str, principal: Principal, instance_id: str
    ) -> tuple[UploadSession, str]:
        session_id = session.session_id
        check_owner(session, principal)
        if self.with_effective_status(session).status == "expired":
            raise SessionExpired(f"upload session {session_id} expired at {session.expires_at}")
        if session.status != "active":
            raise SessionConflict(
                f"upload session {session_id} was already used (status {session.status})",
                details={"status": session.status},
            )
        return await self.update(
            session,
            version,
            status="uploading",
            instance_id=instance_id,
            streamer_beats=True,
            message="upload in progress",
        )

    async def update(
        self, session: UploadSession, version: str, **changes: Any
    ) -> tuple[UploadSession, str]:
        updated = msgspec.structs.replace(session, updated_at=self._clock(), **changes)
        new_version = await self._documents.replace(
            session_key(session.session_id), _encoder.encode(updated), version=version
        )
        return updated, new_version

    async def finish(self, session_id: str, status: SessionStatus, **changes: Any) -> UploadSession:
        """Record how an upload ended, retrying when another writer got there first.

        A session already `cancelled` stays cancelled: the cancel is what ended it.
        """
        while True:
            session, version = await self.load(session_id)
            if session.status == "cancelled" and status != "completed":
                return session
            try:
                updated, _ = await self.update(session, version, status=status, **changes)
                return updated
            except VersionConflict:
                continue

    async def cancel(
        self,
        session_id: str,
        principal: Principal,
        *,
        reports_here: Callable[[UploadSession], Awaitable[bool]] | None = None,
    ) -> UploadSession:
        """Mark the session cancelled. `reports_here(session)` says, of the session about to
        be cancelled, whether nobody else will report the cancel (never claimed, or its
        streamer gone): the session is then cancelled `unreported`, for the caller to settle."""
        while True:
            session, version = await self.load(session_id)
            check_owner(session, principal)
            if session.status == "cancelled":
                return session
            if session.status in ENDED_STATUSES:
                raise SessionConflict(
                    f"upload session {session_id} already ended ({session.status})",
                    details={"status": session.status},
                )
            unreported = reports_here is not None and await reports_here(session)
            try:
                updated, _ = await self.update(
                    session,
                    version,
                    status="cancelled",
                    message="cancelled by the user",
                    unreported=unreported,
                )
                return updated
            except VersionConflict:
                continue

    async def mutate(
        self, session_id: str, change: Callable[[UploadSession], UploadSession | None]
    ) -> tuple[UploadSession, bool]:
        """Apply `change` (None: leave it) to the current document until a compare-and-swap
        takes it; the session, and whether this call changed it. Only for sessions of one
        request: a tus document carries more than this service decodes (the tus service's)."""
        while True:
            session, version = await self.load(session_id)
            updated = change(session)
            if updated is None:
                return session, False
            try:
                changed, _ = await self.update(updated, version)
                return changed, True
            except VersionConflict:
                continue

    def now(self) -> datetime:
        return self._clock()

    async def open_session_ids(self) -> list[str]:
        prefix = layout.open_sessions_prefix()
        return [key[len(prefix) :] for key in await self._documents.list_keys(prefix)]

    async def open_entry(self, session_id: str) -> bool:
        """Put the session in the open index again; False when it is there already."""
        try:
            await self._documents.create(layout.open_session_entry(session_id), b"")
        except VersionConflict:
            return False
        return True

    async def close_entry(self, session_id: str) -> None:
        """The session has ended and left nothing behind: no sweep needs to look at it again."""
        await self._documents.delete(layout.open_session_entry(session_id))

    async def status_of(self, session_id: str) -> SessionStatus:
        session, _ = await self.load(session_id)
        return session.status

    async def list_for_user(
        self, user_id: str, *, status: SessionStatus | None = None
    ) -> list[UploadSession]:
        prefix = layout.user_sessions_prefix(user_id)
        sessions = []
        for key in await self._documents.list_keys(prefix):
            try:
                session, _ = await self.load(key[len(prefix) :])
            except SessionNotFound:
                continue
            if session.user_id != user_id:
                # The index is keyed injectively; this guards against a hand-edited bucket.
                continue
            session = self.with_effective_status(session)
            if status is None or session.status == status:
                sessions.append(session)
        sessions.sort(key=lambda s: s.created_at, reverse=True)
        return sessions


class CompletionRecorder:
    """Records one upload completed, with its `upload.completed` as built, before the event is
    sent (`record` is the pipeline's `record_completion`), so `ingest reconcile` finds every
    completion whose event was lost and sends that very event again.

    It writes over the version its claim (or its own last write) returned, with no read
    first: nothing else writes a claimed session but a cancel, and when one did, the
    compare-and-swap fails and the write is made again on the fresh document (`finish`).
    Recording again (a duplicate found meanwhile) replaces what it recorded.
    """

    def __init__(self, sessions: SessionService, claimed: UploadSession, version: str) -> None:
        self._sessions = sessions
        self._claimed = claimed
        self._version: str | None = version
        self._session: UploadSession | None = None

    async def record(self, result: UploadResult, event: Event) -> None:
        if not isinstance(event, UploadCompleted):
            raise TypeError(f"not a completed event: {type(event).__name__}")
        changes: dict[str, Any] = {
            "status": "completed",
            "message": "upload completed",
            "bytes_received": result.size_bytes,
            "result": result,
            "completed_event": event,
        }
        if self._version is not None:
            current = self._session or self._claimed
            try:
                self._session, self._version = await self._sessions.update(
                    current, self._version, **changes
                )
                return
            except VersionConflict:
                self._version = None  # changed meanwhile: from now on, read before writing
        self._session = await self._sessions.finish(self._claimed.session_id, **changes)

    @property
    def session(self) -> UploadSession:
        """The session as recorded completed; RuntimeError before `record` succeeded."""
        if self._session is None:
            session_id = self._claimed.session_id
            raise RuntimeError(f"upload session {session_id} was not recorded completed")
        return self._session


def new_session_id() -> str:
    return uuid.uuid4().hex


def check_owner(session: UploadSession, principal: Principal) -> None:
    if session.user_id != principal.user_id and not principal.is_admin:
        raise Forbidden("this upload session belongs to another user")


def session_key(session_id: str) -> str:
    return layout.session_document(session_id)
