"""A process-wide byte budget for upload buffers, handed out first come, first served.

Every upload takes the bytes of a part from the budget before it reads that
part from the client, and gives them back when the part is stored. When the
budget is spent, readers wait, the socket buffers fill and TCP slows the
clients: a slow S3 never grows the heap.

It does not fail: `reserve` only waits. A request larger than the whole budget
is capped to the budget, so a single upload can always make progress. A task
cancelled while waiting takes nothing (and gives back what it was granted in
the same instant). It belongs to one event loop and is not thread-safe.
"""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType


class Reservation:
    """Bytes held from a `MemoryBudget`; give them back with `release()` (idempotent)."""

    __slots__ = ("_budget", "_held", "_size")

    def __init__(self, budget: MemoryBudget, size: int) -> None:
        self._budget = budget
        self._size = size
        self._held = True
        budget._holders += 1

    @property
    def size(self) -> int:
        """Bytes still held (0 once released)."""
        return self._size

    @property
    def released(self) -> bool:
        return self._size == 0

    def shrink(self, size: int) -> None:
        """Keep only `size` bytes and give the rest back (a short last part needs less)."""
        if size < 0:
            raise ValueError("a reservation cannot shrink below 0 bytes")
        if size < self._size:
            surplus, self._size = self._size - size, size
            self._budget._give_back(surplus)
        if size == 0 and self._held:
            self._held = False
            self._budget._holders -= 1

    def release(self) -> None:
        self.shrink(0)

    async def __aenter__(self) -> Reservation:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<Reservation {self._size} bytes>"


class _Waiter:
    __slots__ = ("future", "size")

    def __init__(self, size: int, future: asyncio.Future[None]) -> None:
        self.size = size
        self.future = future


class MemoryBudget:
    def __init__(self, total_bytes: int) -> None:
        if total_bytes <= 0:
            raise ValueError("a memory budget needs at least 1 byte")
        self._total = total_bytes
        self._in_use = 0
        self._holders = 0
        self._waiters: deque[_Waiter] = deque()

    @property
    def total(self) -> int:
        return self._total

    @property
    def in_use(self) -> int:
        return self._in_use

    @property
    def available(self) -> int:
        return self._total - self._in_use

    @property
    def holders(self) -> int:
        """Reservations held now: one per part being read, hashed or sent."""
        return self._holders

    @property
    def waiting(self) -> int:
        """How many reservations are queued."""
        return len(self._waiters)

    @property
    def waiting_bytes(self) -> int:
        return sum(w.size for w in self._waiters)

    async def reserve(self, size: int) -> Reservation:
        """Wait until `size` bytes (at most the whole budget) are free, then hold them."""
        if size < 0:
            raise ValueError("cannot reserve a negative number of bytes")
        size = min(size, self._total)
        # Jumping the queue whenever a small request fits would starve large ones.
        if not self._waiters and self._in_use + size <= self._total:
            self._in_use += size
            return Reservation(self, size)
        waiter = _Waiter(size, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            await waiter.future
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                # Granted in the same loop iteration as the cancel: nobody will
                # ever hold these bytes, so hand them on.
                self._give_back(size)
            else:
                self._forget(waiter)
            raise
        return Reservation(self, size)

    def _give_back(self, size: int) -> None:
        self._in_use -= size
        self._grant_waiters()

    def _forget(self, waiter: _Waiter) -> None:
        try:
            self._waiters.remove(waiter)
        except ValueError:
            return
        # A large request that leaves the head of the queue may unblock smaller ones.
        self._grant_waiters()

    def _grant_waiters(self) -> None:
        while self._waiters:
            head = self._waiters[0]
            if head.future.done():  # its task was cancelled; _forget will find it gone
                self._waiters.popleft()
                continue
            if self._in_use + head.size > self._total:
                return
            self._waiters.popleft()
            self._in_use += head.size
            head.future.set_result(None)

    def __repr__(self) -> str:
        return f"<MemoryBudget {self._in_use}/{self._total} bytes, {self.waiting} waiting>"
