"""A consumer app for the runtime's tests: records what it handled, fails and waits on demand."""

from __future__ import annotations

import asyncio
from collections import defaultdict

from infra.errors import ServiceError, ServiceUnavailable
from infra.feeds import Record, TopicPartition
from schemas import Event


class ScriptedApp:
    """A `ConsumerApp` whose behaviour per event id is set by the test.

    `fail_retriable[id] = n`: the first n tries raise a retriable ServiceUnavailable;
    `poison`: ids whose handling raises a non-retriable error; `gates[id]`: an
    asyncio.Event the handling waits for before it finishes.
    """

    def __init__(self, name: str, *topics: str, max_in_flight: int = 1) -> None:
        self._name = name
        self._topics = frozenset(topics)
        self._max_in_flight = max_in_flight
        self.handled: list[str] = []
        self.tries: defaultdict[str, int] = defaultdict(int)
        self.fail_retriable: dict[str, int] = {}
        self.poison: set[str] = set()
        self.gates: dict[str, asyncio.Event] = {}
        self.assigned: list[frozenset[TopicPartition]] = []
        self.revoked: list[frozenset[TopicPartition]] = []
        self.changed = asyncio.Event()

    @property
    def name(self) -> str:
        return self._name

    @property
    def topics(self) -> frozenset[str]:
        return self._topics

    @property
    def max_in_flight(self) -> int:
        return self._max_in_flight

    async def on_assigned(self, partitions: frozenset[TopicPartition]) -> None:
        self.assigned.append(partitions)

    async def on_revoked(self, partitions: frozenset[TopicPartition]) -> None:
        self.revoked.append(partitions)

    async def handle(self, event: Event, record: Record) -> None:
        key = event.event_id
        self.tries[key] += 1
        gate = self.gates.get(key)
        if gate is not None:
            await gate.wait()
        if key in self.poison:
            raise ValueError(f"cannot make sense of {key}")
        if self.tries[key] <= self.fail_retriable.get(key, 0):
            raise ServiceUnavailable(f"storage is down for {key}")
        if key == "not-retriable-service-error":
            raise ServiceError("refused for good")
        self.handled.append(key)
        self.changed.set()

    async def wait_for(self, count: int) -> None:
        await self.wait_for_within(count, seconds=5)

    async def wait_for_within(self, count: int, *, seconds: float) -> None:
        async with asyncio.timeout(seconds):
            while len(self.handled) < count:
                self.changed.clear()
                await self.changed.wait()
