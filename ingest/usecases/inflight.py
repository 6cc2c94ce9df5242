"""The uploads in flight on this instance, per user, for the quota to count beside the snapshots.

Published quota snapshots only count completed uploads, and only once the
quota consumer got to them, so an instance that answered 429s from snapshots
alone would accept any number of uploads opened at once. Each instance
therefore keeps here what its own open uploads may still add: a session's
declared size from its creation while it is open (held until the session
ends, or for at most the session TTL when nobody ends it here, as when its
body is sent to another instance), then, while its body streams, the larger
of that and the bytes actually received. An upload counts one against the
upload limit from the moment it is held, but for a piece of a file (a tus
partial upload), whose final upload is the one counted. A completed upload stays held
(`settled`) until the user's published snapshot charges it, so the window
between an upload's end and the quota consumer's snapshot is no gap in the
count; if no snapshot charges it within `settle_seconds` (the consumer is
down), the hold lapses.

Memory stays bounded: an entry is removed when its upload ends here, and an
entry nobody ends expires with its session (expired entries are swept as the
ledger is used). Nothing here awaits, so a check and the hold that follows it
are one step on the event loop: two requests can never both take the last
bytes of a quota on one instance. Other instances are not seen; how far that
lets a user overshoot is in the README. Never raises.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Entry:
    user_id: str
    size: int
    expires_at: float | None
    """Monotonic deadline; None while a body streams (its end always releases it)."""
    settled: bool = False
    """Completed: held until a snapshot charges it (or `expires_at`)."""
    allowance: int = 0
    """Bytes the body may reach before the quota is checked again (see `Admission.charge`)."""
    piece: bool = False
    """A piece of a file (a tus partial upload): its bytes count, but it is no upload of its
    own; the final upload that joins the pieces counts once."""


Counted = Callable[[str], bool]
"""Whether the user's published snapshot already charges this upload id."""


@dataclass(frozen=True)
class InFlightUsage:
    bytes: int
    uploads: int


class InFlightUploads:
    def __init__(
        self,
        *,
        hold_seconds: float,
        settle_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if hold_seconds <= 0 or settle_seconds <= 0:
            raise ValueError("an upload is held for a positive time")
        self._hold_seconds = hold_seconds
        self._settle_seconds = settle_seconds
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._by_user: dict[str, set[str]] = {}
        self._next_sweep = clock() + hold_seconds

    def __len__(self) -> int:
        return len(self._entries)

    def usage(
        self, user_id: str, *, excluding: str | None = None, counted: Counted | None = None
    ) -> InFlightUsage:
        """What the user's uploads in flight here hold, but for `excluding` (the one asking)
        and completed ones a snapshot already charges (`counted`)."""
        self._sweep()
        now = self._clock()
        total = uploads = 0
        for upload_id in list(self._by_user.get(user_id, ())):
            entry = self._entries[upload_id]
            expired = entry.expires_at is not None and entry.expires_at <= now
            if expired or (entry.settled and counted is not None and counted(upload_id)):
                self.release(upload_id)
            elif upload_id != excluding:
                total += entry.size
                uploads += 0 if entry.piece else 1
        return InFlightUsage(bytes=total, uploads=uploads)

    def hold(self, user_id: str, upload_id: str, size: int | None, *, piece: bool = False) -> None:
        """Hold `size` bytes for an open upload until it ends or the hold expires."""
        entry = self._entry(user_id, upload_id)
        entry.size = max(entry.size, size or 0)
        entry.expires_at = self._clock() + self._hold_seconds
        entry.piece = piece

    def streaming(
        self, user_id: str, upload_id: str, size: int | None, *, piece: bool = False
    ) -> None:
        """A body is streaming: held without expiry until `release` (or `hold` again)."""
        entry = self._entry(user_id, upload_id)
        entry.size = max(entry.size, size or 0)
        entry.expires_at = None
        entry.piece = piece

    def settled(self, upload_id: str, size: int) -> None:
        """The upload completed with `size` bytes: held until a snapshot charges it."""
        entry = self._entries.get(upload_id)
        if entry is None:
            return
        entry.size = size
        entry.settled = True
        entry.expires_at = self._clock() + self._settle_seconds

    def within_allowance(self, upload_id: str, total: int) -> bool:
        entry = self._entries.get(upload_id)
        return entry is not None and total <= entry.allowance

    def allow(self, upload_id: str, total: int) -> None:
        """The body may reach `total` bytes before its quota is checked again."""
        entry = self._entries.get(upload_id)
        if entry is not None:
            entry.allowance = total

    def received(self, upload_id: str, total: int) -> None:
        """The body has brought `total` bytes so far; never lowers what is held."""
        entry = self._entries.get(upload_id)
        if entry is not None and total > entry.size:
            entry.size = total

    def release(self, upload_id: str) -> None:
        entry = self._entries.pop(upload_id, None)
        if entry is None:
            return
        ids = self._by_user.get(entry.user_id)
        if ids is not None:
            ids.discard(upload_id)
            if not ids:
                del self._by_user[entry.user_id]

    def _entry(self, user_id: str, upload_id: str) -> _Entry:
        self._sweep()
        entry = self._entries.get(upload_id)
        if entry is None or entry.user_id != user_id:
            if entry is not None:
                self.release(upload_id)
            entry = self._entries[upload_id] = _Entry(user_id, 0, None)
            self._by_user.setdefault(user_id, set()).add(upload_id)
        else:
            entry.settled = False
        return entry

    def _sweep(self) -> None:
        # At most once per hold period: the whole ledger is walked, so not on every call.
        now = self._clock()
        if now < self._next_sweep:
            return
        self._next_sweep = now + min(self._hold_seconds, 60.0)
        for upload_id, entry in list(self._entries.items()):
            if entry.expires_at is not None and entry.expires_at <= now:
                self.release(upload_id)
