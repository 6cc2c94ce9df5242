"""Committing one PATCH: how far its bytes may count, and the new offset recorded under the lease.

`PatchCommit.end_of` says how far the upload may be committed: everything the
PATCH stored, or nothing of it when an Upload-Checksum cannot be verified (the
body was cut short or closed) or does not match. `commit` then stores the new
offset, the tail segments that hold the bytes after the last full part, the
next event sequence and a later expiry in the session document in one
compare-and-swap, giving the lease back unless the upload is now complete
(completing it is still to do). `tidy_tails` removes the tail objects the
committed document no longer lists.

How it fails. A checksum mismatch removes the tail this PATCH wrote, gives the
lease back and raises ChecksumMismatch (460). `commit` raises UploadGone (410)
when the upload was terminated meanwhile and OffsetMismatch (409) when another
request took the lease over: nothing is committed then. A tail object that
cannot be removed is logged and left (`Lifecycle.drop`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol

import msgspec

from ingest.errors import ChecksumMismatch
from ingest.usecases.tus.body import PatchBody
from ingest.usecases.tus.events import TusEvents
from ingest.usecases.tus.lease import Held, held_state
from ingest.usecases.tus.lifecycle import Lifecycle
from ingest.usecases.tus.protocol import Checksum
from ingest.usecases.tus.state import TusSession, TusSessions, with_state
from ingest.usecases.tus.tail import Segment, tail_after
from ingest.usecases.tus.writer import Layout, Written


class CommitHost(Protocol):
    """What committing a PATCH needs from the tus service."""

    sessions: TusSessions
    lifecycle: Lifecycle

    @property
    def session_ttl(self) -> float: ...

    def wall_clock(self) -> datetime: ...


class PatchCommit:
    def __init__(self, host: CommitHost, held: Held, layout: Layout, events: TusEvents) -> None:
        self._host = host
        self._session_id = held.session.session_id
        self._owner = held.owner
        self._layout = layout
        self._events = events

    async def end_of(
        self,
        written: Written,
        body: PatchBody,
        checksum: Checksum | None,
        cut_short: BaseException | None,
    ) -> int:
        """How far the upload may now be committed; ChecksumMismatch keeps it where it was."""
        digest = body.digest
        if digest is None or checksum is None:
            return written.end
        committed = self._layout.committed
        if cut_short is not None or body.valve.reason is not None:
            return committed  # bytes that cannot be verified are not kept
        if await digest.digest() == checksum.digest:
            return written.end
        await self.tidy_tails(written, committed, replaced=())
        next_sequence = self._events.next_sequence
        await self._host.lifecycle.release(self._session_id, self._owner, next_sequence)
        raise ChecksumMismatch(
            f"the body does not match its {checksum.algorithm} Upload-Checksum; "
            "nothing of it was kept",
            details={"algorithm": checksum.algorithm, "offset": committed},
        )

    async def commit(self, end: int, kept: Sequence[Segment]) -> TusSession:
        """Store the new offset, the next sequence and a later expiry; give the lease back.

        `kept` are the tail segments before the one this request wrote. The lease is
        kept when the upload is complete: completing it is still to do.
        """
        host, owner = self._host, self._owner
        expires_at = host.wall_clock() + timedelta(seconds=host.session_ttl)
        next_sequence = self._events.next_sequence

        tail = tail_after(kept, end, self._layout.part_size)

        def commit(session: TusSession) -> TusSession:
            state = held_state(session, owner)
            complete = state.upload_length is not None and end == state.upload_length
            committed = with_state(
                session,
                offset=end,
                tail_segments=state.tail_segments if end == state.offset else tail,
                lease=state.lease if complete else None,
                next_sequence=state.next_sequence if complete else next_sequence,
            )
            length = "?" if state.upload_length is None else str(state.upload_length)
            return msgspec.structs.replace(
                committed,
                bytes_received=end,
                expires_at=expires_at,
                message=f"{end} of {length} bytes stored",
            )

        return await host.sessions.mutate(self._session_id, commit)

    async def tidy_tails(self, written: Written, end: int, replaced: Sequence[Segment]) -> None:
        """Remove the tail segments the state committed at `end` does not list: the one
        this request wrote when it is not committed, the `replaced` ones when it is."""
        lifecycle = self._host.lifecycle
        if written.tail_key is not None and written.end != end:
            await lifecycle.drop(written.tail_key)
        if end != self._layout.committed:
            for segment in replaced:
                await lifecycle.drop(segment.key)
