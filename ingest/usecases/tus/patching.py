"""One PATCH of a tus upload, from a held lease to a committed offset.

`PatchRun.run` reads the committed tail, judges the container from the first
bytes of the file (415 before any part exists; the upload then fails for good),
streams the body through the part writer, verifies `Upload-Checksum` when the
client sent one, and commits the new offset, the next event sequence and a
later expiry in the session document in one compare-and-swap, giving the lease
back. When the upload length is reached it completes the upload under the same
lease (see `completion`).

How it fails. A body cut short (client gone, read timeout, size or quota
passed) or closed (another request asked for the upload, shutdown) still
commits everything that arrived, unless a checksum was sent: bytes that cannot
be verified are never committed. A part that cannot be stored commits the
parts stored before it. A checksum mismatch commits nothing and raises
ChecksumMismatch (460). A lease taken over commits nothing and raises
OffsetMismatch (409). After committing, the error that cut the body short is
raised (413, 429, 408, 502...). Cancellation (the upload was terminated) aborts
the multipart upload, removes the tails and emits `upload.cancelled`.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

import msgspec

from infra import layout
from ingest.errors import (
    ChecksumMismatch,
    OffsetMismatch,
    QuotaExceeded,
    TooLarge,
    UnsupportedFormat,
    UploadGone,
)
from ingest.pipeline.body import MeteredBody, SizeLimits
from ingest.pipeline.budget import MemoryBudget
from ingest.pipeline.config import PipelineConfig
from ingest.pipeline.container import CONTENT_TYPES, HEAD_BYTES, detect_format, resolve_format
from ingest.pipeline.ending import run_to_end
from ingest.pipeline.engine import PartHasher
from ingest.pipeline.hashing import StreamHasher
from ingest.pipeline.parts import PartReader
from ingest.ports import MultipartUpload
from ingest.usecases.admission import UploadLimits
from ingest.usecases.tus.body import EndOnFailure, TusInterrupt, Valve
from ingest.usecases.tus.checksum import OrderedDigest, digesting
from ingest.usecases.tus.events import TusEvents
from ingest.usecases.tus.lease import Held
from ingest.usecases.tus.lifecycle import Lifecycle
from ingest.usecases.tus.protocol import PatchRequest, UploadInfo
from ingest.usecases.tus.running import RunningHashes
from ingest.usecases.tus.state import TusSession, TusSessions, TusState, with_state
from ingest.usecases.tus.store import TusStore
from ingest.usecases.tus.tail import Segment, append_segment, appends, bounds, segments_of
from ingest.usecases.tus.writer import Layout, PartWriter, Written

if TYPE_CHECKING:
    from _hashlib import HASH


class RunningDigest(Protocol):
    """The file's SHA-256 as one request carries it on (`StreamHasher`, `OrderedDigest`)."""

    @property
    def fed(self) -> int:
        """Bytes of this request added to the hash so far."""
        ...

    async def finish(self) -> HASH: ...

    async def close(self) -> None: ...


class PatchHost(Protocol):
    """What a PATCH needs from the tus service that runs it (named here, not imported,
    so the service and its PATCHes do not import each other)."""

    sessions: TusSessions
    lifecycle: Lifecycle
    store: TusStore
    budget: MemoryBudget
    pipeline: PipelineConfig
    limits: UploadLimits
    running: RunningHashes

    @property
    def session_ttl(self) -> float: ...

    def wall_clock(self) -> datetime: ...

    def quota_remaining(self, user_id: str, upload_id: str) -> int: ...

    def info_of(self, session: TusSession) -> UploadInfo: ...

    async def read_tail(self, session: TusSession) -> bytes: ...


class PatchRun:
    def __init__(
        self,
        service: PatchHost,
        held: Held,
        request: PatchRequest,
        body: AsyncIterator[bytes],
        events: TusEvents,
    ) -> None:
        self._svc = service
        self._session = held.session
        self._owner = held.owner
        self._request = request
        self._events = events
        state = held.session.state
        self._layout = Layout(state.part_size, state.offset, state.upload_length)
        self.valve = Valve(body)
        self.interrupt = TusInterrupt(valve=self.valve)
        self._metered = MeteredBody(
            self.valve, SizeLimits(max_size=sys.maxsize), on_chunk=self._on_chunk
        )
        checksum = request.checksum
        self._digest = OrderedDigest(checksum.algorithm) if checksum is not None else None
        arrived: AsyncIterator[bytes] = self._metered
        if self._digest is not None:
            arrived = digesting(arrived, self._digest)
        self._arrived = EndOnFailure(arrived)
        self._carried = service.running.at(self.session_id, state.offset)
        self._whole: RunningDigest | None = None
        """The file's SHA-256 carried on through this request, when this instance had it."""
        self._quota_remaining: int | None = None
        self._new_tail: str | None = None
        self._segments = segments_of(self.session_id, state)
        self._replaced: list[Segment] = []
        """Tail segments the committed state no longer lists: removed after the commit."""
        self._kept: list[Segment] = []
        """Tail segments the committed state still lists before the new tail."""

    @property
    def session_id(self) -> str:
        return self._session.session_id

    async def run(self) -> UploadInfo:
        try:
            return await self._run()
        except (asyncio.CancelledError, UploadGone):
            # Terminated meanwhile: seen by the lease keeper, or by a commit.
            await self._after_cancel()
            raise
        except Exception:
            # Whatever stopped the request, the next one must not wait for the lease to lapse.
            await self._svc.lifecycle.release(
                self.session_id, self._owner, self._events.next_sequence
            )
            raise
        finally:
            for digest in (self._digest, self._whole):
                if digest is not None:
                    await digest.close()

    # The happy path, top to bottom.

    async def _run(self) -> UploadInfo:
        layout = self._layout
        self._quota_remaining = self._svc.quota_remaining(
            self._session.user_id, self._session.session_id
        )
        if appends(self._session.state, self._request):
            written = await self._append_to_tail()
        else:
            written = await self._write_parts()
        self._new_tail = written.tail_key
        if self.valve.reason == "lease lost":
            raise OffsetMismatch("another request took this upload over; ask for its offset again")
        cut_short = self._arrived.error or written.failure
        end = await self._end_to_commit(written, cut_short)

        if end > layout.committed:
            self._events.progress(forced=True)
        session = await self._commit(end)
        await self._tidy_tails(written, end)
        await self._carry_hash(end, written)
        if session.state.complete:
            # Even for a request cut short: every byte of the file is stored.
            self.interrupt.completing = True
            session = await self._svc.lifecycle.complete(
                session,
                self._owner,
                self._events,
                sha256=self._svc.running.sha256_of(self.session_id, end),
            )
            self._svc.running.forget(self.session_id)
        if cut_short is not None:
            raise cut_short
        return self._svc.info_of(session)

    async def _write_parts(self) -> Written:
        # The tail is read when the first part is, inside that part's share of the memory
        # budget (holding it apart while waiting for more budget could deadlock uploads).
        reader = PartReader(_after(self._read_tail, self._arrived))
        await self._judge_first_bytes(reader)
        hasher: PartHasher | None = None
        if self._carried is not None:
            # The part engine's one job per part feeds the file's hash too; the tail
            # read back ahead of the body is in that hash already.
            layout = self._layout
            hasher = self._whole = StreamHasher(
                resume=self._carried, skip=layout.committed - layout.base
            )
        written = await self._writer(hasher).write(reader)
        self._replaced = self._segments
        return written

    async def _append_to_tail(self) -> Written:
        content_length = self._request.content_length
        assert content_length is not None
        body: AsyncIterator[bytes] = self._arrived
        if self._carried is not None:
            # No parts here to hash with: the (short) body is hashed as it arrives.
            self._whole = OrderedDigest("sha256", resume=self._carried)
            body = digesting(body, self._whole)
        appended = await append_segment(
            self.session_id,
            self._session.state,
            body,
            declared=content_length,
            store=self._svc.store,
            budget=self._svc.budget,
        )
        self._replaced, self._kept = appended.replaced, appended.kept
        return appended.written

    async def _judge_first_bytes(self, reader: PartReader) -> None:
        """Refuse a non-video before any part exists (415, and the upload fails for good)."""
        state = self._session.state
        if state.judged:
            return
        head = await reader.peek(HEAD_BYTES)
        whole_file = (
            reader.exhausted
            and state.upload_length is not None
            and self._layout.base + reader.buffered >= state.upload_length
        )
        if len(head) < HEAD_BYTES and not whole_file:
            return  # too few bytes to judge yet: they are kept as the tail
        try:
            fmt = resolve_format(
                detect_format(head),
                declared=self._session.file_format,
                allowed=self._svc.limits.allowed_formats,
            )
        except UnsupportedFormat as error:
            await self._svc.lifecycle.fail(self._session, self._events, error)
            raise
        started_at = self._svc.wall_clock()
        self._events.set_format(fmt)
        await self._events.upload_started(started_at)
        content_type = CONTENT_TYPES.get(fmt)
        self._session = await self._update(
            lambda s: with_state(s, format=fmt, started_at=started_at, content_type=content_type)
        )

    async def _read_tail(self) -> bytes:
        return await self._svc.read_tail(self._session)

    def _writer(self, hasher: PartHasher | None) -> PartWriter:
        return PartWriter(
            self._layout,
            store=self._svc.store,
            tail_key=lambda start, end: layout.tus_segment_key(self.session_id, start, end),
            budget=self._svc.budget,
            parts_in_flight=self._svc.pipeline.parts_in_flight,
            open_multipart=self._open_multipart,
            on_stored=self._on_part_stored,
            hasher=hasher,
        )

    async def _open_multipart(self) -> MultipartUpload:
        state = self._session.state
        store = self._svc.store
        if state.multipart_upload_id is not None:
            return store.resume_multipart(self._session.s3_key, state.multipart_upload_id)
        multipart = await store.start_multipart(
            self._session.s3_key,
            content_type=state.content_type,
            metadata=layout.object_metadata(
                upload_id=self.session_id, user_id=self._session.user_id, file_format=state.format
            ),
        )
        upload_id = multipart.upload_id
        self._session = await self._update(lambda s: with_state(s, multipart_upload_id=upload_id))
        return multipart

    async def _on_chunk(self, size: int) -> None:
        total = self._layout.committed + self._metered.received
        length = self._layout.length
        if length is not None and total > length:
            raise TooLarge(
                f"the upload is {length} bytes long; this request goes past it",
                details={"upload_length": length, "offset": total},
            )
        if total > self._svc.limits.max_size:
            raise TooLarge(
                f"the upload passed the maximum size of {self._svc.limits.max_size} bytes",
                details={"max_size": self._svc.limits.max_size, "offset": total},
            )
        if self._quota_remaining is not None and total > self._quota_remaining:
            raise QuotaExceeded(
                f"the upload passed the {self._quota_remaining} bytes left in the quota",
                details={"quota_remaining": self._quota_remaining, "offset": total},
            )
        self._events.on_chunk(size)

    async def _on_part_stored(self, stored_through: int) -> None:
        self._events.parts_stored = -(-stored_through // self._layout.part_size)
        self._events.progress(forced=True)

    async def _end_to_commit(self, written: Written, cut_short: BaseException | None) -> int:
        """How far the upload may now be committed; ChecksumMismatch keeps it where it was."""
        checksum = self._request.checksum
        if self._digest is None or checksum is None:
            return written.end
        if cut_short is not None or self.valve.reason is not None:
            return self._layout.committed  # bytes that cannot be verified are not kept
        if await self._digest.digest() == checksum.digest:
            return written.end
        await self._tidy_tails(written, self._layout.committed)
        await self._svc.lifecycle.release(self.session_id, self._owner, self._events.next_sequence)
        raise ChecksumMismatch(
            f"the body does not match its {checksum.algorithm} Upload-Checksum; "
            "nothing of it was kept",
            details={"algorithm": checksum.algorithm, "offset": self._layout.committed},
        )

    async def _commit(self, end: int) -> TusSession:
        """Store the new offset, the next sequence and a later expiry; give the lease back.

        The lease is kept when the upload is complete: completing it is still to do.
        """
        expires_at = self._svc.wall_clock() + timedelta(seconds=self._svc.session_ttl)
        next_sequence = self._events.next_sequence

        tail = self._tail_after(end)

        def commit(session: TusSession) -> TusSession:
            state = self._require_lease(session)
            complete = state.upload_length is not None and end == state.upload_length
            committed = with_state(
                session,
                offset=end,
                tail_segments=state.tail_segments if end == state.offset else tail,
                lease=state.lease if complete else None,
                next_sequence=state.next_sequence if complete else next_sequence,
            )
            length = "?" if state.upload_length is None else str(state.upload_length)
            return msgspec.structs.replace(
                committed,
                bytes_received=end,
                expires_at=expires_at,
                message=f"{end} of {length} bytes stored",
            )

        return await self._svc.sessions.mutate(self.session_id, commit)

    async def _carry_hash(self, end: int, written: Written) -> None:
        """Keep the file's hash up to `end` for the next PATCH, when it covers exactly that."""
        whole, committed = self._whole, self._layout.committed
        if isinstance(whole, StreamHasher) and written.tail:
            whole.feed(written.tail)  # the new tail: stored, but not as a part
        if whole is not None and end == committed + whole.fed:
            self._svc.running.keep(self.session_id, end, await whole.finish())
        elif end != committed:
            self._svc.running.forget(self.session_id)

    def _tail_after(self, end: int) -> tuple[tuple[int, int], ...]:
        """The tail segments once `end` is committed (what this request wrote ends there)."""
        size = end % self._layout.part_size
        if size == 0:
            return ()
        return (*bounds(self._kept), (end - size if not self._kept else self._kept[-1].end, end))

    async def _tidy_tails(self, written: Written, end: int) -> None:
        """Remove the tail segments the committed state does not list."""
        if written.tail_key is not None and written.end != end:
            await self._svc.lifecycle.drop(written.tail_key)
        if end != self._layout.committed:
            for segment in self._replaced:
                await self._svc.lifecycle.drop(segment.key)

    async def _update(self, change: Callable[[TusSession], TusSession]) -> TusSession:
        def guarded(session: TusSession) -> TusSession:
            self._require_lease(session)
            return change(session)

        return await self._svc.sessions.mutate(self.session_id, guarded)

    def _require_lease(self, session: TusSession) -> TusState:
        state = session.state
        if session.status == "cancelled":
            raise UploadGone("the upload was terminated", details={"status": "cancelled"})
        if state.lease is None or state.lease.owner != self._owner:
            raise OffsetMismatch(
                "another request took this upload over; ask for its offset again",
                details={"offset": state.offset},
            )
        return state

    # The failure path.

    async def _after_cancel(self) -> None:
        """The upload was terminated while this request wrote to it: undo everything."""
        await run_to_end(
            self._svc.lifecycle.after_cancel(
                self._session, self._owner, self._events, self._new_tail
            ),
            within=self._svc.pipeline.abort_timeout,
            what=f"cleaning up the terminated tus upload {self.session_id}",
        )


async def _after(
    first: Callable[[], Awaitable[bytes]], rest: AsyncIterator[bytes]
) -> AsyncIterator[bytes]:
    """What `first()` returns once asked for, then every chunk of `rest`."""
    head = await first()
    if head:
        yield head
    del head
    async for chunk in rest:
        yield chunk
