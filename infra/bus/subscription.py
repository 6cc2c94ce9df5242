"""A subscription to topics of the in-process bus: retained records first, then live ones.

The bus pushes each live record to every subscription of its topic
(`offer`), never waiting: a subscription holds at most `queue_size` live
records not yet read.

How it fails: a subscription further behind than that is dropped by the bus
with a logged warning; its iterator yields what it was holding, then raises
SubscriberDropped (resubscribe to read on, from the beginning if nothing may
be missed). `close`, and the bus closing, end the iterator at once
(StopAsyncIteration), dropping what it held.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Literal, Self

from infra.bus.log import BusRecord
from infra.errors import ServiceUnavailable


class SubscriberDropped(ServiceUnavailable):
    """The subscription fell more than its queue size behind and was dropped by the bus."""


class Subscription:
    """Records of some topics, retained ones first, then live ones; see the module docstring."""

    def __init__(
        self,
        topics: frozenset[str],
        backlog: Iterable[BusRecord],
        queue_size: int,
        unsubscribe: Callable[[Subscription], None],
    ) -> None:
        self._topics = topics
        self._backlog = deque(backlog)
        self._live: deque[BusRecord] = deque()
        self._queue_size = queue_size
        self._unsubscribe = unsubscribe
        self._wakeup = asyncio.Event()
        self._state: Literal["open", "closed", "dropped"] = "open"

    @property
    def topics(self) -> frozenset[str]:
        return self._topics

    @property
    def caught_up(self) -> bool:
        """True once every record retained when it subscribed has been yielded."""
        return not self._backlog

    @property
    def pending(self) -> int:
        """Records held and not yet yielded."""
        return len(self._backlog) + len(self._live)

    @property
    def dropped(self) -> bool:
        return self._state == "dropped"

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> BusRecord:
        while True:
            if self._state == "closed":
                raise StopAsyncIteration
            if self._backlog:
                return self._backlog.popleft()
            if self._live:
                return self._live.popleft()
            if self._state == "dropped":
                raise SubscriberDropped(
                    f"the subscription to {', '.join(sorted(self._topics))} fell more than "
                    f"{self._queue_size} records behind and was dropped",
                    details={"topics": sorted(self._topics)},
                )
            self._wakeup.clear()
            await self._wakeup.wait()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop receiving; the iterator ends at once. Safe to call twice."""
        if self._state == "open":
            self._unsubscribe(self)
        self.end("closed")

    def offer(self, record: BusRecord) -> bool:
        """Take a live record; False (and nothing taken) when the queue is full."""
        if len(self._live) >= self._queue_size:
            return False
        self._live.append(record)
        self._wakeup.set()
        return True

    def end(self, state: Literal["closed", "dropped"]) -> None:
        """Called by the bus: closed (nothing more), or dropped (what is held, then the error)."""
        if self._state == "closed":
            return
        self._state = state
        if state == "closed":
            self._backlog.clear()
            self._live.clear()
        self._wakeup.set()
