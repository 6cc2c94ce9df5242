"""Which offset of one partition may be committed: the end of its contiguous finished prefix.

Records of a partition finish out of order when several are in flight. The
group may only be told "everything before N is done" when every record the
member was *given* below N has finished. Offsets are not contiguous in Kafka
(transaction markers and compaction leave gaps), so the tracker remembers the
offsets it was given, in order, and never computes `offset + 1` to find the
next record; only the committed value itself is "last finished + 1", as
Kafka's commit means "the next record to read".

How it fails: `returned` raises ValueError when offsets do not increase and
`finished` when the offset was never returned or already finished: both are
bugs in the caller, never data problems.
"""

from __future__ import annotations

from collections import deque


class OffsetTracker:
    """The offsets of one partition handed out, those finished, and what was committed."""

    def __init__(self, committed: int | None = None) -> None:
        self._outstanding: deque[int] = deque()
        self._finished: set[int] = set()
        self._last_returned: int | None = None
        # The offset of the next record to read, as far as this member has finished.
        self._done_before: int | None = committed
        self._committed: int | None = committed

    @property
    def committed(self) -> int | None:
        """The last offset committed through `mark_committed` (or given at creation)."""
        return self._committed

    @property
    def outstanding(self) -> int:
        """Records returned and not yet part of the finished prefix."""
        return len(self._outstanding)

    def returned(self, offset: int) -> None:
        """The member was given the record at `offset` (in increasing order)."""
        if self._last_returned is not None and offset <= self._last_returned:
            raise ValueError(f"offset {offset} returned after {self._last_returned}")
        self._last_returned = offset
        self._outstanding.append(offset)

    def finished(self, offset: int) -> None:
        """The record at `offset` is done with: handled, skipped or dead-lettered."""
        if offset in self._finished or offset not in self._outstanding:
            raise ValueError(f"offset {offset} is not awaiting completion")
        self._finished.add(offset)
        while self._outstanding and self._outstanding[0] in self._finished:
            head = self._outstanding.popleft()
            self._finished.remove(head)
            self._done_before = head + 1

    def to_commit(self) -> int | None:
        """The offset to commit now, or None when nothing finished since the last commit."""
        if self._done_before is None or self._done_before == self._committed:
            return None
        return self._done_before

    def mark_committed(self, offset: int) -> None:
        self._committed = offset
