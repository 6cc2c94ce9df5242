"""Making a final tus upload: its partial uploads' objects joined into one file, reported once.

The service (`service.TusService.create_final`) checks the partial uploads
(`partials`), plans the part copies (`concat`), judges the container from the
first partial upload's first bytes, claims the partial uploads and creates the
final's session holding its lease; `FinalJoin.run` then does the rest under
that lease, as one upload with its own events: `upload.started`, the copies
into a new multipart upload (no byte passes through the service), the
complete, the file's SHA-256 read back from the stored object (streamed, one
chunk hashed while the next is read: SHA-256 does not compose, so the
partial uploads' own hashes cannot give the file's), the duplicate check,
`upload.completed` with the total size, and last the partial uploads consumed.

How it fails: a copy, the complete or the read-back that fails (StorageError,
502) fails the final (`upload.failed`, its multipart upload aborted, any joined
object deleted) and gives the partial uploads back, so another final may join
them; a DELETE of the final meanwhile does the same with `upload.cancelled`,
and a shutdown the same as a failure (503). The partial uploads are only
deleted once the final is recorded complete.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import Protocol

from infra import layout
from ingest.errors import IngestError, ServiceUnavailable
from ingest.model import UploadResult
from ingest.pipeline.config import PipelineConfig
from ingest.pipeline.container import HEAD_BYTES, detect_format, resolve_format
from ingest.pipeline.ending import run_to_end
from ingest.ports import PartCopying
from ingest.usecases.tus.completion import record_stored
from ingest.usecases.tus.concat import Copy, JoinLimits, copy_all
from ingest.usecases.tus.events import TusEvents
from ingest.usecases.tus.lease import Held
from ingest.usecases.tus.lifecycle import Lifecycle
from ingest.usecases.tus.partials import consume, give_back
from ingest.usecases.tus.state import TusSession, TusSessions, with_state
from ingest.usecases.tus.store import TusStore


class FinalHost(Protocol):
    """What a join needs from the tus service that runs it."""

    sessions: TusSessions
    lifecycle: Lifecycle
    store: TusStore
    pipeline: PipelineConfig

    def wall_clock(self) -> datetime: ...


async def judge_head(
    store: TusStore, key: str, *, declared: str | None, allowed: Sequence[str]
) -> str:
    """The container of the file whose first piece is `key`, from its first bytes
    (UnsupportedFormat, 415, for anything but an allowed video)."""
    head = bytearray()
    chunks: AsyncIterator[bytes] = store.read_object(key)
    try:
        async for chunk in chunks:
            head += chunk
            if len(head) >= HEAD_BYTES:
                break
    finally:
        closing = getattr(chunks, "aclose", None)
        if closing is not None:
            await closing()
    return resolve_format(
        detect_format(bytes(head[:HEAD_BYTES])), declared=declared, allowed=allowed
    )


class FinalJoin:
    def __init__(
        self,
        host: FinalHost,
        held: Held,
        events: TusEvents,
        partials: Sequence[TusSession],
        copies: Sequence[Copy],
        limits: JoinLimits,
    ) -> None:
        self._host = host
        self.held = held
        self._session = held.session
        self._owner = held.owner
        self.events = events
        self.partials = list(partials)
        self._copies = copies
        self._limits = limits

    @property
    def session_id(self) -> str:
        return self._session.session_id

    async def run(self) -> TusSession:
        try:
            return await self._run()
        except asyncio.CancelledError:
            await self._undo(None)
            raise
        except IngestError as error:
            await self._undo(error)
            raise

    async def _run(self) -> TusSession:
        host, session = self._host, self._session
        state = session.state
        await self.events.upload_started(state.started_at or host.wall_clock())
        store = host.store
        assert isinstance(store, PartCopying)
        target = await store.start_copy_multipart(
            session.s3_key,
            content_type=state.content_type,
            metadata=layout.object_metadata(
                upload_id=self.session_id, user_id=session.user_id, file_format=state.format
            ),
        )
        upload_id = target.upload_id
        self._session = await self._update(lambda s: with_state(s, multipart_upload_id=upload_id))
        parts = await copy_all(target, self._copies, at_once=self._limits.copies_at_once)
        stored = await target.complete(parts)
        result = await self._result(len(parts), stored.etag)
        length = result.size_bytes
        completed = await host.lifecycle.finish(
            self._session,
            self.events,
            result,
            change=lambda current: with_state(current, offset=length),
        )
        await consume(host.sessions, store, self.partials, self.session_id)
        return completed

    async def _result(self, parts: int, etag: str | None) -> UploadResult:
        """The joined file's record: its SHA-256 read back (it does not compose from the
        pieces'), its duplicate settled."""
        host = self._host
        return await record_stored(
            self._session,
            parts=parts,
            etag=etag,
            store=host.store,
            claim_original=host.lifecycle.claim_original(self._session),
            lookup_timeout=host.pipeline.event_timeout,
            wall_clock=host.wall_clock,
        )

    async def _update(self, change: Callable[[TusSession], TusSession]) -> TusSession:
        owner = self._owner

        def guarded(current: TusSession) -> TusSession:
            lease = current.state.lease
            if current.status != "uploading" or lease is None or lease.owner != owner:
                raise ServiceUnavailable("the final upload was taken over or ended meanwhile")
            return change(current)

        return await self._host.sessions.mutate(self.session_id, guarded)

    async def abandon(self) -> None:
        """End the final before joining anything (the server is shutting down)."""
        await self._undo(None)

    async def _undo(self, error: IngestError | None) -> None:
        """End the final without completing it (`error` None: stopped by a cancel or a
        shutdown), and give its partial uploads back."""
        await run_to_end(
            self._end(error),
            within=self._host.pipeline.abort_timeout,
            what=f"ending the final tus upload {self.session_id}",
        )

    async def _end(self, error: IngestError | None) -> None:
        host = self._host
        current, _ = await host.sessions.load(self.session_id)
        if current.status == "cancelled":
            # A DELETE of the final: reported, its multipart upload aborted (`after_cancel`).
            await host.lifecycle.after_cancel(current, self._owner, self.events, None)
        elif current.status == "uploading":
            reason = error or ServiceUnavailable(
                "the server stopped while joining the partial uploads; create the final again"
            )
            await host.lifecycle.fail(current, self.events, reason)
        await give_back(host.sessions, self.partials, self.session_id)
