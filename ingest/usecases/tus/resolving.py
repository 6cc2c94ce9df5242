"""What a tus request finds: the caller's upload, its state brought up to date first.

Nothing runs between requests to a tus upload on any instance (the sweeper aside),
so every request settles what happened meanwhile before it looks at the upload:
an upload whose time is up is expired then (`lifecycle`); one that ended is
cleaned up if nobody did; one whose last byte is stored but which was never
recorded as complete (the request that stored it failed to) is completed
under the lease, so a client told "all bytes are there" does see it
completed. None of this happens while another request holds a live lease.

How it fails: SessionNotFound (404) for an unknown upload, Forbidden (403)
for another user's, UploadGone (410) for one terminated, failed or expired;
`finished` raises FinalUploadReadOnly (403) for a final upload, to which no
PATCH may write. A late completion raises what completing raises (a
StorageError, 502) and what taking the lease raises (UploadLocked, 409).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from ingest.auth import Principal
from ingest.errors import FinalUploadReadOnly, OffsetMismatch, UploadGone
from ingest.usecases.tus.body import TusInterrupt
from ingest.usecases.tus.leased import LeasedRunner
from ingest.usecases.tus.lifecycle import Lifecycle
from ingest.usecases.tus.running import RunningHashes
from ingest.usecases.tus.state import TusSession, TusSessions

ENDED = frozenset({"cancelled", "failed", "expired"})


class UploadResolver:
    def __init__(
        self,
        *,
        sessions: TusSessions,
        lifecycle: Lifecycle,
        running: RunningHashes,
        runner: LeasedRunner,
        clock: Callable[[], datetime],
    ) -> None:
        self._sessions = sessions
        self._lifecycle = lifecycle
        self._running = running
        self._runner = runner
        self._clock = clock

    async def resolve(self, session_id: str, principal: Principal) -> TusSession:
        """The caller's upload, expired or cleaned up first if its time is up or it ended
        (then UploadGone)."""
        session = await self._sessions.owned(session_id, principal)
        now = self._clock()
        state = session.tus
        lease_alive = state is not None and state.lease_alive(now)
        if session.status == "uploading" and not lease_alive and now >= session.expires_at:
            session = await self._lifecycle.expire(session_id)
        if session.status in ENDED:
            state = session.tus
            if not lease_alive and (state is None or not state.cleaned):
                await self._lifecycle.clean_up(session)
            raise UploadGone(f"the upload is {session.status}", details={"status": session.status})
        return session

    async def completed_if_pending(self, session: TusSession, principal: Principal) -> TusSession:
        """The upload, completed now when its last byte is stored but nobody recorded it and
        no request holds its lease."""
        state = session.state
        if (
            session.status == "uploading"
            and state.complete
            and not state.stored
            and state.concat != "final"
            and not state.lease_alive(self._clock())
        ):
            # The request that stored the last byte could not complete the upload: do it
            # now, or a client told "all bytes are there" would never see it completed.
            return await self._complete_later(session, principal)
        return session

    async def _complete_later(self, session: TusSession, principal: Principal) -> TusSession:
        def admit(current: TusSession) -> TusSession:
            if current.status != "uploading" or not current.state.complete:
                raise OffsetMismatch("the upload changed", details={"offset": current.state.offset})
            return current

        try:
            held = await self._runner.acquire(session.session_id, principal, admit)
        except OffsetMismatch:
            current, _ = await self._sessions.load(session.session_id)
            return current
        events = self._lifecycle.events_for(held.session, held.first_sequence)
        task = asyncio.current_task()
        assert task is not None
        length = held.session.state.upload_length
        sha256 = None if length is None else self._running.sha256_of(session.session_id, length)
        async with self._runner.keeping(held, events, TusInterrupt(completing=True), task):
            completed = await self._lifecycle.complete(
                held.session, held.owner, events, sha256=sha256
            )
        self._running.forget(session.session_id)
        return completed


def finished(session: TusSession) -> bool:
    """Nothing more can be written: completed, a partial upload stored whole, or a final
    (PATCH on which is refused, FinalUploadReadOnly)."""
    state = session.state
    if state.concat == "final":
        raise FinalUploadReadOnly(
            "a final upload is made of its partial uploads; PATCH those instead",
            details={"upload_concat": state.concat_header},
        )
    return session.status == "completed" or state.stored
