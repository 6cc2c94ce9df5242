"""Storing one PATCH's bytes: appended to the tail, or written as parts once the file is judged.

`PatchStorer.store` writes what the body brings at the upload's committed
offset and says how far it got (`writer.Written`), committing nothing. A body
that cannot reach the next part boundary becomes the tail's next segment
(`tail.appends`, `tail.append_segment`); any other is read behind the
committed tail and written by the part writer as the parts that follow
offsets, the multipart upload opened when the first part needs it (and resumed
with the part checksum it was recorded with, if any: see `state`). Before the
upload's first part exists, its container is judged from the file's first
bytes: `upload.started` is emitted then, and the format, the start time and
the content type are recorded with the lease. The file's SHA-256 is carried on
as the bytes pass (`running.CarriedHash`).

How it fails. A non-video's first bytes raise UnsupportedFormat (415) and fail
the upload for good. Recording the format or the multipart upload raises
UploadGone (410) once the upload is terminated and OffsetMismatch (409) once
another request took it over. A part or the new tail that cannot be stored is
not raised but reported in `Written.failure`, so the caller can commit what
was stored before it; a committed tail that cannot be read back raises
StorageError or is reported the same way, depending on when it is read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Protocol

from infra import layout
from ingest.errors import UnsupportedFormat
from ingest.pipeline.budget import MemoryBudget
from ingest.pipeline.config import PipelineConfig
from ingest.pipeline.container import CONTENT_TYPES, HEAD_BYTES, detect_format, resolve_format
from ingest.pipeline.engine import PartHasher
from ingest.pipeline.parts import PartReader
from ingest.ports import STARTED_PART_CHECKSUM, MultipartUpload
from ingest.usecases.admission import UploadLimits
from ingest.usecases.tus.events import TusEvents
from ingest.usecases.tus.lease import Held, change_held
from ingest.usecases.tus.lifecycle import Lifecycle
from ingest.usecases.tus.protocol import PatchRequest
from ingest.usecases.tus.running import CarriedHash
from ingest.usecases.tus.state import TusSession, TusSessions, with_state
from ingest.usecases.tus.store import TusStore
from ingest.usecases.tus.tail import Segment, append_segment, appends, segments_of
from ingest.usecases.tus.writer import Layout, PartWriter, Written


class StoringHost(Protocol):
    """What storing a PATCH's bytes needs from the tus service."""

    sessions: TusSessions
    lifecycle: Lifecycle
    store: TusStore
    budget: MemoryBudget
    pipeline: PipelineConfig
    limits: UploadLimits

    def wall_clock(self) -> datetime: ...

    async def read_tail(self, session: TusSession) -> bytes: ...


class PatchStorer:
    def __init__(
        self,
        host: StoringHost,
        held: Held,
        request: PatchRequest,
        layout: Layout,
        events: TusEvents,
        hashes: CarriedHash,
    ) -> None:
        self._host = host
        self.session = held.session
        """The upload's document as this request last changed it (format, multipart upload)."""
        self._owner = held.owner
        self._request = request
        self._layout = layout
        self._events = events
        self._hashes = hashes
        self._segments = segments_of(self.session_id, held.session.state)
        self.replaced: list[Segment] = []
        """Tail segments the committed state no longer lists: removed after the commit."""
        self.kept: list[Segment] = []
        """Tail segments the committed state still lists before the new tail."""

    @property
    def session_id(self) -> str:
        return self.session.session_id

    async def store(self, body: AsyncIterator[bytes]) -> Written:
        """Store what `body` yields after the committed offset; how far that got."""
        if appends(self.session.state, self._request):
            return await self._append_to_tail(body)
        return await self._write_parts(body)

    async def _write_parts(self, body: AsyncIterator[bytes]) -> Written:
        # The tail is read when the first part is, inside that part's share of the memory
        # budget (holding it apart while waiting for more budget could deadlock uploads).
        reader = PartReader(_after(self._read_tail, body))
        await self._judge_first_bytes(reader)
        layout = self._layout
        hasher = self._hashes.for_parts(skip=layout.committed - layout.base)
        written = await self._writer(hasher).write(reader)
        self.replaced = self._segments
        return written

    async def _append_to_tail(self, body: AsyncIterator[bytes]) -> Written:
        content_length = self._request.content_length
        assert content_length is not None
        appended = await append_segment(
            self.session_id,
            self.session.state,
            self._hashes.through(body),
            declared=content_length,
            store=self._host.store,
            budget=self._host.budget,
        )
        self.replaced, self.kept = appended.replaced, appended.kept
        return appended.written

    async def _judge_first_bytes(self, reader: PartReader) -> None:
        """Refuse a non-video before any part exists (415, and the upload fails for good)."""
        state = self.session.state
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
        host = self._host
        try:
            fmt = resolve_format(
                detect_format(head),
                declared=self.session.file_format,
                allowed=host.limits.allowed_formats,
            )
        except UnsupportedFormat as error:
            await host.lifecycle.fail(self.session, self._events, error)
            raise
        started_at = host.wall_clock()
        self._events.set_format(fmt)
        await self._events.upload_started(started_at)
        content_type = CONTENT_TYPES.get(fmt)
        self.session = await self._update(
            lambda s: with_state(s, format=fmt, started_at=started_at, content_type=content_type)
        )

    async def _read_tail(self) -> bytes:
        return await self._host.read_tail(self.session)

    def _writer(self, hasher: PartHasher | None) -> PartWriter:
        host = self._host
        return PartWriter(
            self._layout,
            store=host.store,
            tail_key=lambda start, end: layout.tus_segment_key(self.session_id, start, end),
            budget=host.budget,
            parts_in_flight=host.pipeline.parts_in_flight,
            open_multipart=self._open_multipart,
            on_stored=self._on_part_stored,
            hasher=hasher,
        )

    async def _open_multipart(self) -> MultipartUpload:
        state = self.session.state
        store = self._host.store
        if state.multipart_upload_id is not None:
            return store.resume_multipart(
                self.session.s3_key, state.multipart_upload_id, state.part_checksum
            )
        multipart = await store.start_multipart(
            self.session.s3_key,
            content_type=state.content_type,
            metadata=layout.object_metadata(
                upload_id=self.session_id, user_id=self.session.user_id, file_format=state.format
            ),
        )
        upload_id = multipart.upload_id
        self.session = await self._update(
            lambda s: with_state(
                s, multipart_upload_id=upload_id, part_checksum=STARTED_PART_CHECKSUM
            )
        )
        return multipart

    async def _on_part_stored(self, stored_through: int) -> None:
        self._events.parts_stored = -(-stored_through // self._layout.part_size)
        self._events.progress(forced=True)

    async def _update(self, change: Callable[[TusSession], TusSession]) -> TusSession:
        return await change_held(self._host.sessions, self.session_id, self._owner, change)


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
