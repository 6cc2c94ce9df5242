"""`TopicReader` whose records a test hands over itself: `StaticFeed`."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from infra.feeds import TopicPartition

if TYPE_CHECKING:
    from infra.feeds import TopicReader


@dataclass
class StaticFeed:
    """A topic reader that reads nothing itself: a test hands records to the handler and sets
    the reader's health and readiness by hand."""

    topic: str = "ingest.quota"
    healthy: bool = False
    last_error: str | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        self.healthy = True
        self.ready.set()

    async def stop(self) -> None:
        self.healthy = False

    def positions(self) -> dict[TopicPartition, int]:
        return {}


if TYPE_CHECKING:
    # mypy proves the fake still satisfies its port when the port changes.
    _feed: TopicReader = StaticFeed()
