"""Quota views: a user's status from their latest published snapshot, one rule for all.

How it fails: records that are not valid events are logged and skipped; a view
whose reading task fails or ends reports it through `check` (ServiceUnavailable).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Self

from ingest.errors import ServiceUnavailable
from ingest.ports import QuotaStatus
from schemas import InvalidEvent, QuotaUpdated, decode
from schemas.periods import current_period, rfc3339

log = logging.getLogger(__name__)


def quota_status(
    user_id: str,
    snapshot: QuotaUpdated | None,
    *,
    now: datetime,
    period_days: int,
    quota_bytes: int,
    quota_uploads: int,
) -> QuotaStatus:
    """A snapshot of the current period is the answer; without one the current period
    starts empty, with an older snapshot's limits when there is one (an admin may have
    set them), else the defaults."""
    if snapshot is not None and snapshot.period_end > now:
        return QuotaStatus(
            user_id=user_id,
            bytes_limit=snapshot.bytes_limit,
            bytes_used=snapshot.bytes_used,
            uploads_limit=snapshot.uploads_limit,
            uploads_used=snapshot.uploads_used,
            period_start=rfc3339(snapshot.period_start),
            period_end=rfc3339(snapshot.period_end),
        )
    start, end = current_period(now, period_days)
    return QuotaStatus(
        user_id=user_id,
        bytes_limit=snapshot.bytes_limit if snapshot else quota_bytes,
        bytes_used=0,
        uploads_limit=snapshot.uploads_limit if snapshot else quota_uploads,
        uploads_used=0,
        period_start=rfc3339(start),
        period_end=rfc3339(end),
    )


class SnapshotQuotaView:
    """What every quota view shares: the latest snapshot per user read from a quota topic,
    the answers built from them, and the health of the task that reads them.

    Subclasses own the reading: they start a task (set `_task`), feed each record to
    `_apply_record`, call `_mark_ready` once they have read what the topic held at
    start-up, and report trouble through `_healthy` / `_last_error`.
    """

    _ended_message = "the reading task ended"

    def __init__(
        self,
        topic: str,
        *,
        quota_bytes: int,
        quota_uploads: int,
        period_days: int,
        clock: Callable[[], datetime],
    ) -> None:
        if period_days < 1:
            raise ValueError("a quota period lasts at least one day")
        self._topic = topic
        self._quota_bytes = quota_bytes
        self._quota_uploads = quota_uploads
        self._period_days = period_days
        self._clock = clock
        self._snapshots: dict[str, QuotaUpdated] = {}
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._healthy = False
        self._last_error: str | None = None

    @property
    def ready(self) -> asyncio.Event:
        """Set once the snapshots the topic held at start-up have all been read."""
        return self._ready

    @property
    def healthy(self) -> bool:
        """False while the reading task is failing, or not running."""
        return self._healthy and self._task is not None and not self._task.done()

    @property
    def last_error(self) -> str | None:
        return self._last_error

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def check(self) -> None:
        """ServiceUnavailable unless the view is reading and has caught up."""
        if not self.healthy:
            raise ServiceUnavailable(
                f"the quota view of {self._topic!r} is failing: "
                f"{self._last_error or 'not running'}",
                details={"topic": self._topic},
            )
        if not self._ready.is_set():
            raise ServiceUnavailable(
                f"the quota view has not caught up with {self._topic!r} yet",
                details={"topic": self._topic},
            )

    def status(self, user_id: str) -> QuotaStatus:
        return quota_status(
            user_id,
            self._snapshots.get(user_id),
            now=self._clock(),
            period_days=self._period_days,
            quota_bytes=self._quota_bytes,
            quota_uploads=self._quota_uploads,
        )

    def _apply_record(
        self,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]],
        where: str,
    ) -> None:
        if value is None:
            # A tombstone: compaction will forget this user, and so do we.
            if key is not None:
                self._snapshots.pop(key.decode("utf-8", errors="replace"), None)
            return
        try:
            event = decode(value, headers)
        except InvalidEvent as error:
            log.warning("skipping an invalid record at %s: %s", where, error)
            return
        if isinstance(event, QuotaUpdated):
            self._snapshots[event.user_id] = event

    def _mark_ready(self) -> None:
        if not self._ready.is_set():
            log.info("quota view caught up: %d users", len(self._snapshots))
            self._ready.set()

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        self._healthy = False
        self._last_error = repr(error) if error else self._ended_message
        if error is not None:
            log.error("the quota view's reading task stopped", exc_info=error)
        else:
            log.info("the quota view stopped reading: %s", self._ended_message)
