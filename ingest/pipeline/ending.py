"""The last steps of an upload, whichever way it came in: bounded, and never hiding the outcome.

`run_to_end` runs clean-up work (an abort, a failure event) to its end even
when the caller is cancelled meanwhile, within a bound; `duplicate_of` looks
up an earlier upload of the same bytes for the completed event.

How it fails: neither raises. A clean-up that fails or runs out of time is
logged, so it cannot hide the error being cleaned up after; a lookup that
fails or runs out of time is logged and answers None, since the file is
stored either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

FindDuplicate = Callable[[str, str], Awaitable[str | None]]
"""`(user_id, sha256) -> video_id` of an earlier upload of the same file by that user."""


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


async def duplicate_of(
    find: FindDuplicate, user_id: str, sha256: str, *, within: float, upload_id: str
) -> str | None:
    """The video id of an earlier upload of these bytes by this user, or None."""
    try:
        async with asyncio.timeout(within):
            return await find(user_id, sha256)
    except Exception:
        # Only informational: the file is stored either way.
        log.warning("duplicate lookup failed for upload %s", upload_id, exc_info=True)
        return None


async def _bounded(work: Awaitable[T], within: float) -> T:
    async with asyncio.timeout(within):
        return await work
