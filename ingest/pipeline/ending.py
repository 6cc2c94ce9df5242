"""The last steps of an upload, whichever way it came in: bounded, and never hiding the outcome.

`report_completed` ends a stored upload: duplicate index, completion record,
completed event. `run_to_end` runs clean-up work (an abort, a failure event)
to its end even when the caller is cancelled meanwhile, within a bound;
`settle_duplicate` records a stored file as the original of its bytes for its
user, or, when an original is recorded already (an earlier or a concurrent
upload), removes this copy and names the original, before the completed event
says which it is (`original_of`, `discard_copy` and `as_duplicate` are its
steps, for a caller that records the outcome meanwhile).

How it fails: `report_completed` raises what recording or sending the event
raises; the others never raise. A clean-up that fails or runs out of time is
logged, so it cannot hide the error being cleaned up after; a claim that
fails or runs out of time is logged and the file stays stored as an original;
a duplicate copy that cannot be removed is logged and left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import msgspec

from ingest.model import UploadResult
from ingest.pipeline.events import EventWriter, completed_event
from schemas import Event

log = logging.getLogger(__name__)

T = TypeVar("T")

ClaimOriginal = Callable[[UploadResult], Awaitable[UploadResult | None]]
"""Record a stored file as the original of its bytes for its user, unless one is recorded
already (create-if-absent): the recorded original's result, or None."""

RecordCompletion = Callable[[UploadResult, Event], Awaitable[None]]
"""Record a stored upload's result and its completed event before the event is sent;
what it raises fails the upload like a failed send."""


async def run_to_end(work: Awaitable[object], *, within: float, what: str) -> bool:
    """Run `work` to its end (or for `within` seconds) even if the caller is cancelled meanwhile.

    Returns whether the caller was cancelled while waiting; a failure of `work`
    is logged, never raised, so it cannot hide the error being cleaned up after.
    """
    current = asyncio.current_task()
    cancel_requests = current.cancelling() if current is not None else 0
    task = asyncio.ensure_future(_bounded(work, within))
    while not task.done():
        # The task's own outcome is looked at below; a cancellation of the
        # caller only means waiting on.
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.shield(task)
    if task.cancelled():
        log.warning("%s was cancelled", what)
    elif (failure := task.exception()) is not None:
        log.warning("%s failed: %r", what, failure, exc_info=failure)
    return current is not None and current.cancelling() > cancel_requests


async def report_completed(
    result: UploadResult,
    *,
    events: EventWriter,
    claim: ClaimOriginal,
    record: RecordCompletion | None,
    discard: Callable[[], Awaitable[None]],
    within: float,
    upload_id: str,
) -> UploadResult:
    """Record the file in the duplicate index and the upload as completed, then send its
    completed event; the result as reported (a duplicate names its original).

    The index and the record are written at once, the record saying the bytes are new
    (what they nearly always are). For a duplicate the record is written again, naming
    the original, before the copy is removed: a recorded completion never points at a
    removed object (a crash in between leaves the copy behind, not a dangling event).
    Raises what `record` and the event's delivery raise (TimeoutError past `within`).
    """

    async def recorded(result: UploadResult, completed: Event) -> None:
        if record is not None:
            async with asyncio.timeout(within):
                await record(result, completed)

    completed = events.prepare(completed_event(result))
    original, _ = await asyncio.gather(
        original_of(claim, result, within=within, upload_id=upload_id),
        recorded(result, completed),
    )
    if original is not None:
        result = as_duplicate(result, original)
        completed = events.prepare(completed_event(result))
        await recorded(result, completed)
        await discard_copy(discard, within=within, upload_id=upload_id)
    await events.post(completed)
    return result


async def settle_duplicate(
    claim: ClaimOriginal,
    result: UploadResult,
    *,
    discard: Callable[[], Awaitable[None]],
    within: float,
    upload_id: str,
) -> UploadResult:
    """`result` as the original of its bytes, or as a duplicate of the original already
    recorded for its user: then this copy is discarded and the result names the original
    (`duplicate_of`, and its object)."""
    original = await original_of(claim, result, within=within, upload_id=upload_id)
    if original is None:
        return result
    await discard_copy(discard, within=within, upload_id=upload_id)
    return as_duplicate(result, original)


async def original_of(
    claim: ClaimOriginal, result: UploadResult, *, within: float, upload_id: str
) -> UploadResult | None:
    """Record `result` as the original of its bytes for its user; the original recorded
    before it when there is one (another upload's), else None."""
    try:
        async with asyncio.timeout(within):
            original = await claim(result)
    except Exception:
        # Not recorded either way: the file stays stored, as an original.
        log.warning("duplicate lookup failed for upload %s", upload_id, exc_info=True)
        return None
    if original is None or original.video_id == result.video_id:
        # The first to record these bytes, or this very upload recorded by an earlier try.
        return None
    return original


async def discard_copy(
    discard: Callable[[], Awaitable[None]], *, within: float, upload_id: str
) -> None:
    """Remove the copy of a duplicate (the original holds the same bytes); a failure is logged."""
    try:
        async with asyncio.timeout(within):
            await discard()
    except Exception:
        log.warning("could not remove the duplicate copy of upload %s", upload_id, exc_info=True)


def as_duplicate(result: UploadResult, original: UploadResult) -> UploadResult:
    """`result` naming `original` as what it duplicates, and pointing at its object."""
    return msgspec.structs.replace(
        result, duplicate_of=original.video_id, s3_key=original.s3_key, etag=original.etag
    )


async def _bounded(work: Awaitable[T], within: float) -> T:
    async with asyncio.timeout(within):
        return await work
