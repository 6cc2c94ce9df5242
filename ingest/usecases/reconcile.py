"""Reconcile: every completed upload S3 holds has its `upload.completed` on the uploads topic.

The session documents are the record of what completed: each completed
session keeps its `upload.completed` event exactly as it was built (id,
sequence, timestamps), written before the event was sent. A pass lists the
completed sessions first, then reads the uploads topic to its end, and sends
again every recorded event whose id the topic does not hold, with its original
id, once S3 is seen to hold its object at the recorded size (one whose object
is gone or differs is reported, not sent: a consumer would fail on it, and an
operator should look). Sessions first: an upload completing during the pass
then has its event on the topic by the time it is read, or is sent once more,
which is harmless.

Safe at any time and any number of times: an event that is already there is
never sent again by the pass that saw it, and one sent twice (a race with a
journal still draining, two passes at once) carries the same CloudEvents id,
by which every consumer deduplicates. With `since`, only completions from
that time on are compared, against the records stamped from `since` minus
`CLOCK_SKEW` on (a record's timestamp is when it was sent, which is never
before its event was built on the same clock).

Documents written before completed events were kept in them carry no event:
such an upload counts as present when the topic holds an `upload.completed`
for its upload id, and is otherwise reported (`unrecoverable`) rather than
sent under an id it never had. A duplicate answered at creation (a known
`file_hash`) sent no event and is not compared.

How it fails: what the document store, the topic read (ServiceUnavailable
when it cannot read to the end) and the sink (EventDeliveryError) raise; the
events sent before the failure stay sent, and the next pass finds them.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ingest.model import UploadSession
from ingest.ports import EventSink, ObjectSizes, UploadsHistory
from ingest.usecases.sessions import SessionService
from schemas import UploadCompleted

log = logging.getLogger(__name__)

CLOCK_SKEW = timedelta(minutes=5)
"""How far the clock of the host that sent an event may lag the one that built it."""

_AT_ONCE = 16
"""S3 requests, and users' events being sent, at once."""


@dataclass
class ReconcileReport:
    checked: int = 0
    """Completed uploads compared with the topic."""
    present: int = 0
    """Of those, the ones whose completed event the topic holds."""
    reemitted: list[str] = field(default_factory=list)
    """Upload ids whose completed event was sent again, with its original id."""
    unrecoverable: list[str] = field(default_factory=list)
    """Upload ids completed before their event was kept, with no completed event on the topic."""
    objects_missing: list[str] = field(default_factory=list)
    """Upload ids whose event is missing and whose object is gone or not of the recorded size."""
    records_read: int = 0


class Reconciler:
    def __init__(
        self,
        sessions: SessionService,
        history: UploadsHistory,
        sink: EventSink,
        objects: ObjectSizes,
    ) -> None:
        self._sessions = sessions
        self._history = history
        self._sink = sink
        self._objects = objects

    async def run(self, since: datetime | None = None) -> ReconcileReport:
        completed = await self._completed_since(since)
        seen = await self._history.terminal_events(
            since - CLOCK_SKEW if since is not None else None
        )
        report = ReconcileReport(checked=len(completed), records_read=seen.records)
        missing: list[UploadCompleted] = []
        for session in completed:
            event = session.completed_event
            if event is None:
                if session.session_id in seen.completed_uploads:
                    report.present += 1
                else:
                    report.unrecoverable.append(session.session_id)
            elif event.event_id in seen.event_ids:
                report.present += 1
            else:
                missing.append(event)
        intact = await self._with_intact_objects(missing, report)
        await self._send(intact, report)
        return report

    async def _with_intact_objects(
        self, events: list[UploadCompleted], report: ReconcileReport
    ) -> list[UploadCompleted]:
        """The events whose object S3 holds at the recorded size; the others are reported."""
        limit = asyncio.Semaphore(_AT_ONCE)

        async def intact(event: UploadCompleted) -> bool:
            async with limit:
                return await self._objects.stored_size(event.s3_key) == event.size_bytes

        verdicts = await asyncio.gather(*(intact(event) for event in events))
        for event, ok in zip(events, verdicts, strict=True):
            if not ok:
                report.objects_missing.append(event.upload_id)
                log.warning("upload %s completed; its object is not as recorded", event.upload_id)
        return [event for event, ok in zip(events, verdicts, strict=True) if ok]

    async def _send(self, events: list[UploadCompleted], report: ReconcileReport) -> None:
        """Each user's events one after the other, in the order they first happened (the
        topic's order per key), several users at once. The first failure stops the rest."""
        by_user: dict[str, list[UploadCompleted]] = {}
        for event in sorted(events, key=lambda e: e.occurred_at):
            by_user.setdefault(event.user_id, []).append(event)
        limit = asyncio.Semaphore(_AT_ONCE)

        async def send(queue: list[UploadCompleted]) -> None:
            async with limit:
                for event in queue:
                    await self._sink.emit(event)
                    report.reemitted.append(event.upload_id)
                    log.info("re-emitted %s (ce_id %s)", event.upload_id, event.event_id)

        try:
            async with asyncio.TaskGroup() as group:
                for queue in by_user.values():
                    group.create_task(send(queue))
        except ExceptionGroup as failed:
            # One task per user, none nested: the first failure is the one to report.
            raise failed.exceptions[0] from None

    async def _completed_since(self, since: datetime | None) -> list[UploadSession]:
        ids = await self._sessions.session_ids()
        limit = asyncio.Semaphore(_AT_ONCE)

        async def load(session_id: str) -> UploadSession | None:
            async with limit:
                return await self._sessions.find(session_id)

        sessions = await asyncio.gather(*(load(session_id) for session_id in ids))
        return [
            session
            for session in sessions
            if session is not None and _completed_since(session, since)
        ]


def _completed_since(session: UploadSession, since: datetime | None) -> bool:
    if session.status != "completed" or session.result is None:
        return False
    if session.completed_event is None and session.result.duplicate_of == session.result.video_id:
        # A duplicate answered at creation: no event was ever sent for it.
        return False
    if since is None:
        return True
    event = session.completed_event
    return (event.occurred_at if event is not None else session.result.completed_at) >= since
