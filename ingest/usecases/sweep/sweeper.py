"""The sweep: one pass over what failures could not clean, leaving nothing behind.

What a process killed mid-upload, or an abort refused while S3 was down,
leaves is found here, from the shared state alone, by any instance or by
`ingest sweep`. One pass:

- cancel markers addressed to a dead instance (never to be read): the cancel
  it never carried out is settled (aborted, `upload.cancelled`), the marker removed;
- every open session (`SessionService.open_session_ids`):
  - one never claimed whose time is up is written `expired` (no event: it never started);
  - one streaming on an instance that is dead is `failed` (INTERNAL) and settled:
    its multipart upload aborted, `upload.failed` emitted (`settle`), unless its
    file is stored whole (killed between storing and recording it): that one is
    completed from the stored object, `upload.completed` emitted (`complete`),
    or, when the object is not the file the session declared, deleted and failed;
  - one ended but not settled (a DELETE or a sweep that failed half-way) is settled;
  - one ended whose multipart upload is still open (its abort failed) has it aborted,
    and one that did not complete has a file stored whole at its key deleted;
  - a tus upload whose time is up and that nobody writes to (its lease lapsed or
    its instance dead) is expired (`upload.failed` TIMEOUT when it had started),
    one ended has its parts and tail removed, a cancel its dead writer never
    reported is reported;
  - once a session is ended and clean, its open entry is removed;
- heartbeats of instances silent for long are removed.

`rebuild_index` is a one-off pass over every session document for a bucket
whose sessions were written before the open index existed (they have no
entry, so no pass would ever look at them).

Every change of a session is a compare-and-swap, so two sweepers (every
instance runs one) at once are harmless: of two, one writes the ending and
settles it, the other finds it ended. Aborts and deletions are idempotent.
A one-request upload streaming on a living instance is never touched, however
long it takes; its session's TTL bounds when it may start, not how long it runs.

How it fails: a pass that cannot read the heartbeats does nothing (raises);
what fails for one session is logged, counted in the report and tried again
on the next pass; nothing is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import msgspec

from infra import layout
from ingest.errors import IngestError, ServiceUnavailable, SessionNotFound
from ingest.model import UploadSession
from ingest.ports import DocumentStore
from ingest.usecases.instances import Heartbeats, Liveness
from ingest.usecases.sessions import ENDED_STATUSES, SessionService, utc_now
from ingest.usecases.sweep.complete import Completer
from ingest.usecases.sweep.settle import Settler
from ingest.usecases.tus.lifecycle import Lifecycle
from ingest.usecases.tus.state import TusSession

log = logging.getLogger(__name__)

CONCURRENCY = 16
"""Sessions looked at at once: a pass over thousands of open sessions takes seconds."""


@dataclass
class SweepReport:
    expired: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    settled: list[str] = field(default_factory=list)
    aborted: list[str] = field(default_factory=list)
    tus_cleaned: list[str] = field(default_factory=list)
    closed: int = 0
    markers_removed: int = 0
    heartbeats_removed: int = 0
    completed: list[str] = field(default_factory=list)
    """Sessions of a dead instance whose file it stored whole: completed here."""
    refused: list[str] = field(default_factory=list)
    """Sessions of a dead instance whose stored file is not the one declared: deleted, failed."""
    retry: list[str] = field(default_factory=list)
    """Sessions something failed for: tried again on the next pass."""
    looked_at: int = 0
    indexed: int = 0
    """Sessions entered in the open index before the pass (`rebuild_index`)."""

    def summary(self) -> str:
        entered = f"{self.indexed} sessions entered in the open index; " if self.indexed else ""
        return entered + (
            f"looked at {self.looked_at} open sessions: {len(self.failed)} failed (instance gone), "
            f"{len(self.expired)} expired, {len(self.settled)} settled, "
            f"{len(self.aborted)} with leftovers removed, {len(self.tus_cleaned)} tus "
            f"uploads cleaned, {self.closed} closed, {len(self.completed)} stored by a gone "
            f"server completed, {len(self.refused)} of them refused (not the file declared); "
            f"{self.markers_removed} cancel markers and "
            f"{self.heartbeats_removed} heartbeats removed; {len(self.retry)} to retry"
        )

    def lines(self) -> list[str]:
        lines = [self.summary()]
        names = ("failed", "expired", "settled", "aborted", "tus_cleaned", "completed", "refused")
        for name in (*names, "retry"):
            lines.extend(f"{name}: {session_id}" for session_id in getattr(self, name))
        return lines


class Sweeper:
    def __init__(
        self,
        *,
        documents: DocumentStore,
        sessions: SessionService,
        heartbeats: Heartbeats,
        settler: Settler,
        completer: Completer,
        tus: Lifecycle | None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._documents = documents
        self._sessions = sessions
        self._heartbeats = heartbeats
        self._settler = settler
        self._completer = completer
        self._tus = tus
        self._clock = clock

    async def run(self, interval_seconds: float) -> None:
        """A pass at least every `interval_seconds`: a random half to whole of it, so that
        instances do not sweep in step and no gap is ever longer than the interval."""
        while True:
            await asyncio.sleep(interval_seconds * random.uniform(0.5, 1.0))
            try:
                report = await self.sweep()
            except IngestError as error:
                log.warning("the sweep could not run: %s", error)
                continue
            if (
                report.failed
                or report.expired
                or report.settled
                or report.aborted
                or report.completed
            ):
                log.info("sweep: %s", report.summary())

    async def sweep(self) -> SweepReport:
        report = SweepReport()
        liveness = await self._heartbeats.liveness()
        await self._sweep_markers(liveness, report)
        limit = asyncio.Semaphore(CONCURRENCY)

        async def one(session_id: str) -> None:
            async with limit:
                try:
                    await self._sweep_session(session_id, liveness, report)
                except IngestError as error:
                    log.warning("sweep: session %s left for the next pass: %s", session_id, error)
                    report.retry.append(session_id)

        session_ids = await self._sessions.open_session_ids()
        report.looked_at = len(session_ids)
        await asyncio.gather(*(one(session_id) for session_id in session_ids))
        for segment in liveness.long_dead():
            try:
                await self._heartbeats.forget(segment)
            except IngestError as error:
                log.warning("sweep: an old heartbeat stays for the next pass: %s", error)
                continue
            report.heartbeats_removed += 1
        return report

    async def rebuild_index(self) -> int:
        """Enter in the open index every session a sweep may still have work for that lacks
        an entry (written before the index existed); one read of every session, once. Returns
        how many were entered; the next pass looks at them (and closes those with nothing)."""
        indexed = set(await self._sessions.open_session_ids())
        missing = [i for i in await self._sessions.session_ids() if i not in indexed]
        limit = asyncio.Semaphore(CONCURRENCY)

        async def enter(session_id: str) -> bool:
            async with limit:
                stored = await self._documents.read(layout.session_document(session_id))
                if stored is None:
                    return False
                session = msgspec.json.decode(stored.data, type=UploadSession)
                if session.status in ("completed", "expired") and not session.unreported:
                    return False  # ended and clean: nothing a pass would do
                return await self._sessions.open_entry(session_id)

        return sum(await asyncio.gather(*(enter(session_id) for session_id in missing)))

    # Cancel markers of dead instances.

    async def _sweep_markers(self, liveness: Liveness, report: SweepReport) -> None:
        root = layout.all_cancels_prefix()
        for key in await self._documents.list_keys(root):
            segment, _, session_id = key[len(root) :].partition("/")
            if liveness.segment_alive(segment) or segment == self._own_segment:
                continue
            try:
                await self._settle_abandoned_cancel(session_id, report)
            except SessionNotFound:
                pass
            except IngestError as error:
                log.warning("sweep: the cancel of %s is left for the next pass: %s", key, error)
                report.retry.append(session_id)
                continue
            await self._documents.delete(key)
            report.markers_removed += 1

    @property
    def _own_segment(self) -> str:
        return layout.instance_segment(self._heartbeats.instance_id)

    async def _settle_abandoned_cancel(self, session_id: str, report: SweepReport) -> None:
        """The streamer died before it read the cancel: nobody aborted or reported it."""

        def take(session: UploadSession) -> UploadSession | None:
            if session.status != "cancelled" or session.unreported or session.protocol == "tus":
                return None
            return msgspec.structs.replace(session, unreported=True)

        session, _ = await self._sessions.mutate(session_id, take)
        outcome = await self._settler.settle(session)
        if outcome == "failed":
            raise ServiceUnavailable(f"the cancel of upload {session_id} could not be settled")
        if session.unreported and outcome == "settled":
            report.settled.append(session_id)

    # Sessions.

    async def _sweep_session(
        self, session_id: str, liveness: Liveness, report: SweepReport
    ) -> None:
        stored = await self._documents.read(layout.session_document(session_id))
        if stored is None:
            # An entry whose session was never written (its creation failed): nothing to clean.
            await self._close(session_id, report)
            return
        session = msgspec.json.decode(stored.data, type=TusSession)
        if session.protocol == "tus":
            if self._tus is not None:
                await self._sweep_tus(session, liveness, report)
            return
        await self._sweep_one_request(session, liveness, report)

    async def _sweep_one_request(
        self, session: UploadSession, liveness: Liveness, report: SweepReport
    ) -> None:
        session_id = session.session_id
        if session.status == "active":
            if self._clock() >= session.expires_at:
                session, expired = await self._sessions.mutate(session_id, self._expire)
                if expired:
                    report.expired.append(session_id)
            if session.status == "active":
                return
        if session.status == "uploading":
            if not self._streamer_gone(session, liveness):
                return
            # Killed between storing the file whole and recording it, perhaps: completed then.
            completion = await self._completer.complete(session)
            session = completion.session
            if completion.verdict == "completed":
                report.completed.append(session_id)
            elif completion.verdict == "refused":
                report.refused.append(session_id)
            elif completion.verdict == "absent":
                now = self._clock()
                session, failed = await self._sessions.mutate(
                    session_id, lambda s: _fail_for_gone_streamer(s, now)
                )
                if failed:
                    report.failed.append(session_id)
            elif session.status == "uploading":
                return  # another sweeper is completing it
        if session.unreported:
            outcome = await self._settler.settle(session)
            if outcome == "busy":
                return  # another settler is on it
            if outcome == "failed":
                report.retry.append(session_id)
                return
            report.settled.append(session_id)
        elif session.status == "cancelled" and self._streamer_may_still_abort(session, liveness):
            return
        elif session.status in ("failed", "cancelled"):
            leftovers = await self._settler.abort_leftovers(session)
            if leftovers.uploads or leftovers.objects:
                report.aborted.append(session_id)
        if session.status in ENDED_STATUSES:
            await self._close(session_id, report)

    def _streamer_gone(self, session: UploadSession, liveness: Liveness) -> bool:
        if session.instance_id is None:
            return True
        if session.streamer_beats:
            return not liveness.alive(session.instance_id)
        # Claimed by an instance of an earlier version, which writes no heartbeat: gone once
        # a session's lifetime has passed since the claim (a rolling update ends long before).
        claimed_at = session.updated_at or session.created_at
        return self._clock() - claimed_at >= session.expires_at - session.created_at

    def _expire(self, session: UploadSession) -> UploadSession | None:
        if session.status != "active" or self._clock() < session.expires_at:
            return None
        return msgspec.structs.replace(
            session, status="expired", message="the session expired before any upload"
        )

    def _streamer_may_still_abort(self, session: UploadSession, liveness: Liveness) -> bool:
        """A cancel just taken reaches its living streamer within a second, which then aborts
        and reports it itself; aborting under it would make its upload fail instead."""
        streamer = session.instance_id
        if streamer is None or not liveness.alive(streamer) or session.updated_at is None:
            return False
        return self._clock() - session.updated_at < liveness.dead_after

    # Resumable (tus) uploads.

    async def _sweep_tus(
        self, session: TusSession, liveness: Liveness, report: SweepReport
    ) -> None:
        assert self._tus is not None
        lifecycle = self._tus
        session_id = session.session_id

        def gone(instance_id: str) -> bool:
            return not liveness.alive(instance_id)

        if session.status == "uploading" and self._clock() >= session.expires_at:
            session, expired = await lifecycle.expire_now(session_id, gone=gone)
            if expired:
                report.expired.append(session_id)
        if session.status == "cancelled" and await lifecycle.report_abandoned_cancel(
            session_id, gone=gone
        ):
            report.settled.append(session_id)
            session, _ = await lifecycle.sessions.load(session_id)
        state = session.tus
        if session.status == "completed" or state is None:
            await self._close(session_id, report)
            return
        if session.status not in ENDED_STATUSES:
            return
        if not state.cleaned:
            lease = state.lease
            writing = lease is not None and state.lease_alive(self._clock())
            if writing and lease is not None and not gone(lease.instance_id):
                return  # the request writing to it cleans up as it stops
            await lifecycle.clean_up(session)
            session, _ = await lifecycle.sessions.load(session_id)
            if session.tus is None or not session.tus.cleaned:
                report.retry.append(session_id)
                return
            report.tus_cleaned.append(session_id)
        await self._close(session_id, report)

    async def _close(self, session_id: str, report: SweepReport) -> None:
        await self._sessions.close_entry(session_id)
        report.closed += 1


def _fail_for_gone_streamer(session: UploadSession, now: datetime) -> UploadSession | None:
    if session.status != "uploading":
        return None
    if session.settling_until is not None and session.settling_until > now:
        # Another sweeper holds it: one that found the object not the file declared has
        # deleted it already and is about to fail it with the reason.
        return None
    return msgspec.structs.replace(
        session,
        status="failed",
        message="the server streaming this upload stopped before it ended; start a new session",
        error_code="INTERNAL",
        unreported=True,
    )
