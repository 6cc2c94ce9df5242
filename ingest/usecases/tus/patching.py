"""One PATCH of a tus upload, from a held lease to a committed offset.

`PatchRun.run` stores the body's bytes (`storing`: the container judged from
the file's first bytes, then parts or a tail segment), verifies
`Upload-Checksum` when the client sent one and commits the new offset under
the lease (`committing`), carries the file's SHA-256 on to the next PATCH
(`running`), and when the upload length is reached completes the upload
under the same lease (`Lifecycle.complete`, see `completion`).

How it fails. A body cut short (client gone, read timeout, size or quota
passed, see `body.PatchBody`) or closed (another request asked for the upload,
shutdown) still commits everything that arrived, unless a checksum was sent:
bytes that cannot be verified are never committed. A part that cannot be
stored commits the parts stored before it. A checksum mismatch commits nothing
and raises ChecksumMismatch (460). A lease taken over commits nothing and
raises OffsetMismatch (409). After committing, the error that cut the body
short is raised (413, 429, 408, 502...). Any other failure gives the lease
back at once. Cancellation (the upload was terminated) aborts the multipart
upload, removes the tails and emits `upload.cancelled`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Protocol

from ingest.errors import OffsetMismatch, UploadGone
from ingest.pipeline.ending import run_to_end
from ingest.usecases.tus.body import PatchBody, TusInterrupt
from ingest.usecases.tus.committing import CommitHost, PatchCommit
from ingest.usecases.tus.events import TusEvents
from ingest.usecases.tus.lease import Held
from ingest.usecases.tus.protocol import PatchRequest, UploadInfo
from ingest.usecases.tus.running import CarriedHash, RunningHashes
from ingest.usecases.tus.state import TusSession
from ingest.usecases.tus.storing import PatchStorer, StoringHost
from ingest.usecases.tus.writer import Layout


class PatchHost(StoringHost, CommitHost, Protocol):
    """What a PATCH needs from the tus service that runs it (named here, not imported,
    so the service and its PATCHes do not import each other)."""

    running: RunningHashes

    def quota_remaining(self, user_id: str, upload_id: str) -> int: ...

    def info_of(self, session: TusSession) -> UploadInfo: ...


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
        self._owner = held.owner
        self._request = request
        self._events = events
        state = held.session.state
        self._layout = Layout(state.part_size, state.offset, state.upload_length)
        checksum = request.checksum
        self._body = PatchBody(
            body,
            committed=self._layout.committed,
            length=self._layout.length,
            max_size=service.limits.max_size,
            checksum_algorithm=checksum.algorithm if checksum is not None else None,
            on_chunk=events.on_chunk,
        )
        self.interrupt = TusInterrupt(valve=self._body.valve)
        self._hashes = CarriedHash(service.running, held.session.session_id, state.offset)
        self._storer = PatchStorer(service, held, request, self._layout, events, self._hashes)
        self._commit = PatchCommit(service, held, self._layout, events)
        self._new_tail: str | None = None

    @property
    def session_id(self) -> str:
        return self._storer.session_id

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
            await self._body.close()
            await self._hashes.close()

    async def _run(self) -> UploadInfo:
        layout, body, storer = self._layout, self._body, self._storer
        body.quota_remaining = self._svc.quota_remaining(
            storer.session.user_id, storer.session.session_id
        )
        written = await storer.store(body.arrived)
        self._new_tail = written.tail_key
        if body.valve.reason == "lease lost":
            raise OffsetMismatch("another request took this upload over; ask for its offset again")
        cut_short = body.arrived.error or written.failure
        end = await self._commit.end_of(written, body, self._request.checksum, cut_short)

        if end > layout.committed:
            self._events.progress(forced=True)
        session = await self._commit.commit(end, storer.kept)
        await self._commit.tidy_tails(written, end, storer.replaced)
        await self._hashes.keep(end, written.tail)
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

    async def _after_cancel(self) -> None:
        """The upload was terminated while this request wrote to it: undo everything."""
        await run_to_end(
            self._svc.lifecycle.after_cancel(
                self._storer.session, self._owner, self._events, self._new_tail
            ),
            within=self._svc.pipeline.abort_timeout,
            what=f"cleaning up the terminated tus upload {self.session_id}",
        )
