"""A tus upload's resumable state, kept inside its upload-session document.

`TusSession` is an `UploadSession` with one more field, `tus`: the session API
(status, listing, validation) reads it like any other session, while the tus
service keeps in that same JSON document the committed offset, the upload
length, the fixed part size, the multipart upload id, the next event sequence
number and the lease of the request writing to it. Every change is a
compare-and-swap on the document's version, so the offset, the sequence and
the lease always move together, whichever instance writes.

How it fails: SessionNotFound for an unknown id or a session that is not a
tus upload, Forbidden for another user's, StorageError from the store, and
whatever a change function raises. A lost compare-and-swap is retried on the
fresh document, never reported.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Literal

import msgspec

from ingest.auth import Principal
from ingest.errors import SessionNotFound, VersionConflict
from ingest.model import UploadSession
from ingest.ports import DocumentStore, PartChecksum
from ingest.usecases.sessions import SessionService, check_owner, session_key

_SESSION_ID = re.compile(r"^[0-9a-f]{32}$")


class TusLease(msgspec.Struct, frozen=True, kw_only=True):
    """Which request may write to the upload now; it lapses unless renewed."""

    owner: str
    instance_id: str
    expires_at: datetime
    release_requested: bool = False
    """Another request is waiting: the holder should save what it has and let go."""
    release_acknowledged: bool = False
    """The holder saw the request and is saving: the waiting request gives it time. A holder
    that does not acknowledge within seconds is gone (killed) and is taken over."""


class TusState(msgspec.Struct, frozen=True, kw_only=True):
    upload_length: int | None
    """None while the client defers it (creation-defer-length)."""
    part_size: int
    """Fixed for the upload's life: part n holds bytes [(n-1)*part_size, n*part_size)."""
    video_id: str
    analysis_id: str
    offset: int = 0
    """Committed bytes: full parts in the multipart upload, the rest in the tail segments."""
    tail_segments: tuple[tuple[int, int], ...] = ()
    """[start, end) of each object holding the tail, in order, ending at `offset` (see
    `tail`); empty at a part boundary, and in documents that kept one tail object."""
    metadata_header: str | None = None
    """Upload-Metadata as the client sent it, echoed by HEAD."""
    content_type: str | None = None
    multipart_upload_id: str | None = None
    part_checksum: PartChecksum | None = None
    """What the parts of `multipart_upload_id` carry, recorded as it is started; None in a
    document of an earlier version (whose upload may take SHA-256 parts, see
    `ResumableObjectStore.resume_multipart`): the store then finds out."""
    format: str | None = None
    """The container, once judged from the first bytes."""
    started_at: datetime | None = None
    next_sequence: int = 0
    """The sequence number of the upload's next event, on whichever instance it is emitted."""
    lease: TusLease | None = None
    cleaned: bool = False
    """Parts and tail were removed after the upload ended without completing."""
    concat: Literal["partial", "final"] | None = None
    """The concatenation extension: a piece of a file (no events, no quota of its own) or a
    file joined from pieces (see `final`); None for any other upload."""
    stored: bool = False
    """A partial upload's bytes are all stored, as one object: it may be joined."""
    joined_into: str | None = None
    """The final upload a partial upload is being (or was) joined into."""
    partials: tuple[str, ...] = ()
    """A final upload's partial uploads, in order."""
    concat_header: str | None = None
    """A final upload's Upload-Concat as the client sent it, echoed by HEAD."""

    def lease_alive(self, now: datetime) -> bool:
        return self.lease is not None and self.lease.expires_at > now

    @property
    def complete(self) -> bool:
        return self.upload_length is not None and self.offset == self.upload_length

    @property
    def judged(self) -> bool:
        """Whether the first bytes no longer need judging: a partial upload's are not the
        file's (a final's first bytes are judged when it is made)."""
        return self.format is not None or self.concat == "partial"


class TusSession(UploadSession, frozen=True, kw_only=True):
    tus: TusState | None = None

    @property
    def state(self) -> TusState:
        """The tus state; SessionNotFound when the document lost it or never had it."""
        if self.tus is None:
            raise SessionNotFound(f"upload {self.session_id} is not a resumable (tus) upload")
        return self.tus


Change = Callable[[TusSession], TusSession | None]
"""A pure update of the document: the new session, or None to leave it as it is."""

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(TusSession)


class TusSessions:
    def __init__(
        self, sessions: SessionService, documents: DocumentStore, clock: Callable[[], datetime]
    ) -> None:
        self._sessions = sessions
        self._documents = documents
        self._clock = clock

    async def create(self, session: TusSession) -> None:
        # Through the session service, so the user's session index lists it too; a piece of
        # a parallel upload is no upload of its own, so only the upload it is joined into is.
        await self._sessions.store_new(session, listed=session.state.concat != "partial")

    async def load(self, session_id: str) -> tuple[TusSession, str]:
        if not _SESSION_ID.match(session_id):
            raise SessionNotFound(f"no upload {session_id!r}")
        stored = await self._documents.read(session_key(session_id))
        if stored is None:
            raise SessionNotFound(f"no upload {session_id!r}")
        session = _decoder.decode(stored.data)
        if session.protocol != "tus":
            raise SessionNotFound(f"upload {session_id} is not a resumable (tus) upload")
        return session, stored.version

    async def owned(self, session_id: str, principal: Principal) -> TusSession:
        session, _ = await self.load(session_id)
        check_owner(session, principal)
        return session

    async def mutate(self, session_id: str, change: Change) -> TusSession:
        """Apply `change` to the current document until a compare-and-swap takes it."""
        while True:
            session, version = await self.load(session_id)
            updated = change(session)
            if updated is None:
                return session
            updated = msgspec.structs.replace(updated, updated_at=self._clock())
            try:
                await self._documents.replace(
                    session_key(session_id), _encoder.encode(updated), version=version
                )
            except VersionConflict:
                continue
            return updated


def with_state(session: TusSession, **changes: object) -> TusSession:
    """`session` with fields of its tus state changed."""
    return msgspec.structs.replace(session, tus=msgspec.structs.replace(session.state, **changes))
