"""The lease of the one request writing to a tus upload: taken, renewed, watched, given back.

Only one request at a time may write to an upload, since its parts follow its
offset and its events one sequence. That request holds a lease in the session
document, taken by compare-and-swap. A second request (a client that
reconnected to another instance while the first still reads its dead
connection) asks the holder to let go and waits: the holder acknowledges,
saves what it has, commits, and clears the lease; the newcomer then sees the
new offset. A holder that does not acknowledge within `takeover_seconds` (a
few of its polls) is gone, its instance killed, and the newcomer takes the
lease over at once instead of waiting for it to lapse: a holder still alive
but stuck finds its lease taken and commits nothing, so nothing is written
twice.

While its request runs, the keeper polls the document: a cancel stops the
request; a release request, or a lease found taken over, closes the body so the
request saves what arrived. Every third of the lease time it renews the lease
and reserves a block of sequence numbers ahead of the request's events, so
that the events of a request whose instance dies are never numbered again.

The holder changes the document only while the lease is still its own
(`held_state`, `change_held`).

How it fails: `acquire` raises UploadLocked (409, a status tus clients resume
from: they ask for the offset again) when an acknowledged holder does not let
go within `wait_seconds`, and whatever `check` raises; the keeper never raises:
a poll or renewal that fails is retried, and a lease that runs out unrenewed
closes the body ("lease lost"). A holder changing a document it no longer
holds gets UploadGone (410) once the upload is terminated, OffsetMismatch
(409) once another request took it over.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import msgspec

from ingest.auth import Principal
from ingest.errors import IngestError, OffsetMismatch, UploadGone, UploadLocked
from ingest.usecases.sessions import check_owner
from ingest.usecases.tus.state import TusLease, TusSession, TusSessions, TusState, with_state

log = logging.getLogger(__name__)

SEQUENCE_BLOCK = 100_000
"""Sequence numbers reserved ahead of a request's events: far more than it sends in a lease."""


@dataclass(frozen=True)
class LeaseTimes:
    lease_seconds: float
    """How long a lease lasts unrenewed: the longest a dead instance can keep an upload locked."""
    poll_seconds: float
    """How often the holder looks at the document (cancel, release requests)."""
    wait_seconds: float
    """How long a request waits for a holder that acknowledged to let go before giving up."""
    takeover_seconds: float = 2.0
    """How long a request waits for the holder to acknowledge before taking the lease over."""


@dataclass(frozen=True)
class Held:
    session: TusSession
    owner: str
    first_sequence: int


async def acquire(
    sessions: TusSessions,
    session_id: str,
    principal: Principal,
    *,
    admit: Callable[[TusSession], TusSession],
    instance_id: str,
    times: LeaseTimes,
    clock: Callable[[], datetime],
) -> Held:
    """Take the upload's lease on the document as `admit` accepts and changes it.

    `admit` raises when the request cannot go on (409, 410, 413...); what it
    changes (a length declared late) is written only with the lease.
    """
    owner = uuid.uuid4().hex
    first: list[int] = []
    loop = asyncio.get_running_loop()
    # When this request first saw the holder asked to let go, by holder: its own clock,
    # so no two machines' clocks are compared.
    asked_at: dict[str, float] = {}

    def take(session: TusSession) -> TusSession | None:
        check_owner(session, principal)
        admitted = admit(session)
        state = session.state
        now = clock()
        lease = state.lease
        if state.lease_alive(now) and lease is not None:
            if lease.owner == owner:
                return None
            if not lease.release_requested:
                return with_state(
                    session, lease=msgspec.structs.replace(lease, release_requested=True)
                )
            asked = asked_at.setdefault(lease.owner, loop.time())
            if lease.release_acknowledged or loop.time() - asked < times.takeover_seconds:
                return None
            log.warning(
                "taking over tus upload %s: the request on %s did not answer for %.1fs",
                session.session_id,
                lease.instance_id,
                loop.time() - asked,
            )
        first[:] = [state.next_sequence]
        lease = TusLease(
            owner=owner,
            instance_id=instance_id,
            expires_at=now + timedelta(seconds=times.lease_seconds),
        )
        return with_state(admitted, lease=lease, next_sequence=state.next_sequence + SEQUENCE_BLOCK)

    deadline = loop.time() + times.wait_seconds
    while True:
        session = await sessions.mutate(session_id, take)
        lease = session.state.lease
        if lease is not None and lease.owner == owner:
            return Held(session, owner, first[0])
        if loop.time() >= deadline:
            raise UploadLocked(
                "another request is still writing to this upload; retry shortly",
                details={"retry_after_seconds": times.poll_seconds * 4},
            )
        await asyncio.sleep(times.poll_seconds)


def held_state(session: TusSession, owner: str) -> TusState:
    """The upload's state while `owner` still holds its lease; UploadGone once the upload
    was terminated, OffsetMismatch once another request took it over."""
    state = session.state
    if session.status == "cancelled":
        raise UploadGone("the upload was terminated", details={"status": "cancelled"})
    if state.lease is None or state.lease.owner != owner:
        raise OffsetMismatch(
            "another request took this upload over; ask for its offset again",
            details={"offset": state.offset},
        )
    return state


async def change_held(
    sessions: TusSessions,
    session_id: str,
    owner: str,
    change: Callable[[TusSession], TusSession],
) -> TusSession:
    """The upload's document changed by `change`, only while `owner` holds its lease."""

    def guarded(session: TusSession) -> TusSession:
        held_state(session, owner)
        return change(session)

    return await sessions.mutate(session_id, guarded)


class LeaseKeeper:
    def __init__(
        self,
        sessions: TusSessions,
        held: Held,
        *,
        times: LeaseTimes,
        clock: Callable[[], datetime],
        next_sequence: Callable[[], int],
        on_cancelled: Callable[[], None],
        on_release: Callable[[str], None],
    ) -> None:
        self._sessions = sessions
        self._session_id = held.session.session_id
        self._owner = held.owner
        lease = held.session.state.lease
        self._expires_at = lease.expires_at if lease is not None else clock()
        self._times = times
        self._clock = clock
        self._next_sequence = next_sequence
        self._on_cancelled = on_cancelled
        self._on_release = on_release
        self._acknowledge_release = False

    async def run(self) -> None:
        renew_every = timedelta(seconds=self._times.lease_seconds / 3)
        renew_at = self._clock() + renew_every
        while True:
            await asyncio.sleep(self._times.poll_seconds)
            try:
                if self._clock() >= renew_at:
                    session = await self._sessions.mutate(self._session_id, self._renew)
                    renew_at = self._clock() + renew_every
                else:
                    session, _ = await self._sessions.load(self._session_id)
            except IngestError as error:
                log.warning("cannot look at tus upload %s: %s", self._session_id, error)
                if self._clock() >= self._expires_at:
                    self._on_release("lease lost")
                    return
                continue
            if self._judge(session):
                if self._acknowledge_release:
                    await self._acknowledge()
                return

    def _renew(self, session: TusSession) -> TusSession | None:
        state = session.tus
        if state is None or state.lease is None or state.lease.owner != self._owner:
            return None
        if session.status != "uploading":
            return None
        lease = msgspec.structs.replace(
            state.lease, expires_at=self._clock() + timedelta(seconds=self._times.lease_seconds)
        )
        reserved = max(state.next_sequence, self._next_sequence() + SEQUENCE_BLOCK)
        return with_state(session, lease=lease, next_sequence=reserved)

    def _judge(self, session: TusSession) -> bool:
        """React to what the document says; True once the request has been told to stop."""
        if session.status == "cancelled":
            self._on_cancelled()
            return True
        lease = session.tus.lease if session.tus is not None else None
        if session.status != "uploading" or lease is None or lease.owner != self._owner:
            self._on_release("lease lost")
            return True
        self._expires_at = lease.expires_at
        if lease.release_requested:
            self._acknowledge_release = not lease.release_acknowledged
            self._on_release("released")
            return True
        return False

    async def _acknowledge(self) -> None:
        """Tell the waiting request this one is alive and saving, so it is not taken over."""

        def acknowledge(session: TusSession) -> TusSession | None:
            lease = session.tus.lease if session.tus is not None else None
            if lease is None or lease.owner != self._owner or lease.release_acknowledged:
                return None
            return with_state(
                session, lease=msgspec.structs.replace(lease, release_acknowledged=True)
            )

        try:
            await self._sessions.mutate(self._session_id, acknowledge)
        except IngestError as error:
            # The waiting request then takes over, and this one commits nothing.
            log.warning("cannot acknowledge the release of %s: %s", self._session_id, error)
