"""The tail of a tus upload: its committed bytes after the last full part, kept in segments.

S3 cannot hold a part smaller than 5 MiB unless it is the last, so bytes that
do not fill a part wait in small objects until a PATCH fills it. Rewriting one
tail object on every PATCH made each 1 KiB PATCH onto a 7.5 MiB tail cost
15 MiB of S3 traffic. Instead, a PATCH whose body cannot reach the next part
boundary (its Content-Length says so) appends one segment holding just its
bytes, merged with the segments before it only while they are smaller than
twice the new one, like a binary counter: every byte is rewritten at most
about log2(part size / smallest PATCH) times, and an upload holds at most that
many segments. A PATCH that fills a part reads every segment once and writes
the part, as before.

Segments are listed, in order, in the session document (`TusState.tail_segments`);
a document from before segments keeps its tail as one object named by its
offset, which is read as one segment and rewritten into the new form by the
next PATCH that fills a part.

How it fails: a segment missing or of the wrong size raises StorageError (the
upload cannot go on from there); storing the new segment may fail with the
store's error, reported as a `Written` that commits nothing new.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from infra import layout
from ingest.errors import StorageError
from ingest.pipeline.budget import MemoryBudget
from ingest.usecases.tus.protocol import PatchRequest
from ingest.usecases.tus.state import TusState
from ingest.usecases.tus.store import TusStore
from ingest.usecases.tus.writer import Written


@dataclass(frozen=True)
class Segment:
    start: int
    end: int
    key: str

    @property
    def size(self) -> int:
        return self.end - self.start


def segments_of(session_id: str, state: TusState) -> list[Segment]:
    """The objects holding the upload's tail, in order (none at a part boundary)."""
    if state.tail_segments:
        return [
            Segment(start, end, layout.tus_segment_key(session_id, start, end))
            for start, end in state.tail_segments
        ]
    size = state.offset % state.part_size
    if size == 0:
        return []
    return [
        Segment(state.offset - size, state.offset, layout.tus_tail_key(session_id, state.offset))
    ]


def appends(state: TusState, request: PatchRequest) -> bool:
    """Whether this PATCH only adds to the tail: its body ends before the next part boundary
    and before the end of the file, and the tail is already kept in segments."""
    size = request.content_length
    if not size or request.length is not None or not state.judged:
        return False
    if state.offset % state.part_size and not state.tail_segments:
        return False  # one tail object from before segments: the next full part rewrites it
    end = state.offset + size
    next_boundary = state.offset - state.offset % state.part_size + state.part_size
    return end < next_boundary and (state.upload_length is None or end < state.upload_length)


def merged_count(sizes: Sequence[int]) -> int:
    """How many of the trailing segments (the new one last) become one: at least 1."""
    count, total = 1, sizes[-1]
    while count < len(sizes) and sizes[-count - 1] < 2 * total:
        total += sizes[-count - 1]
        count += 1
    return count


@dataclass(frozen=True)
class Appended:
    written: Written
    replaced: list[Segment]
    """Segments whose bytes the new segment holds: removed once it is committed."""
    kept: list[Segment]
    """Segments before it, left as they are."""


async def append_segment(
    session_id: str,
    state: TusState,
    body: AsyncIterator[bytes],
    *,
    declared: int,
    store: TusStore,
    budget: MemoryBudget,
) -> Appended:
    """Store what `body` yields (at most `declared` bytes) as the tail's next segment."""
    committed = state.offset
    segments = segments_of(session_id, state)
    merge = merged_count([s.size for s in segments] + [declared]) - 1
    kept, replaced = segments[: len(segments) - merge], segments[len(segments) - merge :]
    start = replaced[0].start if replaced else committed
    async with await budget.reserve(committed - start + declared):
        data = bytearray(await read_segments(store, replaced))
        async for chunk in body:
            data += chunk
        if len(data) == committed - start:
            return Appended(Written(committed, b"", None, None), [], segments)
        end = start + len(data)
        key = layout.tus_segment_key(session_id, start, end)
        try:
            await store.put_small(key, bytes(data))
        except Exception as error:  # kept as the request's failure: nothing new is committed
            return Appended(Written(committed, b"", None, error), [], segments)
        return Appended(Written(start, bytes(data), key, None), replaced, kept)


async def read_segments(store: TusStore, segments: Sequence[Segment]) -> bytes:
    """The bytes of `segments`, in order; StorageError when one is missing or damaged."""
    pieces = []
    for segment in segments:
        data = await store.get_small(segment.key)
        if data is None or len(data) != segment.size:
            raise StorageError(
                "a stored tail segment of the upload is missing or damaged",
                details={
                    "key": segment.key,
                    "expected": segment.size,
                    "found": data and len(data),
                },
            )
        pieces.append(data)
    return b"".join(pieces)


def bounds(segments: Sequence[Segment]) -> tuple[tuple[int, int], ...]:
    return tuple((s.start, s.end) for s in segments)


def tail_after(kept: Sequence[Segment], end: int, part_size: int) -> tuple[tuple[int, int], ...]:
    """The tail's segments once a PATCH commits `end`: the segments it `kept`, then the
    one it wrote, which ends there (none at a part boundary)."""
    size = end % part_size
    if size == 0:
        return ()
    return (*bounds(kept), (end - size if not kept else kept[-1].end, end))
