"""`EventSink`s that keep every event: `RecordingEventSink`, and `GatedSink`, which holds
the events of chosen types until the test lets them through."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, TypeVar

from ingest.errors import ServiceUnavailable
from schemas import Event, UploadEvent, event_type

if TYPE_CHECKING:
    from ingest.ports import EventSink


E = TypeVar("E", bound=Event)


class RecordingEventSink:
    """An event bus that keeps every event it accepts, in order, in `events`.

    Knobs: `fail_with` (raised by `emit`, for every type or only `fail_types`),
    `delay` seconds per emit (for every type or only `delay_types`), `healthy`.
    Refused events go to `refused`; `attempts` counts every call.
    """

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.refused: list[Event] = []
        self.attempts = 0
        self.fail_with: Exception | None = None
        self.fail_types: tuple[type[Event], ...] = ()
        self.delay = 0.0
        self.delay_types: tuple[type[Event], ...] = ()
        self.healthy = True

    async def emit(self, event: Event) -> None:
        self.attempts += 1
        if self.delay and (not self.delay_types or isinstance(event, self.delay_types)):
            await asyncio.sleep(self.delay)
        if self.fail_with is not None and (
            not self.fail_types or isinstance(event, self.fail_types)
        ):
            self.refused.append(event)
            raise self.fail_with
        self.events.append(event)

    async def check(self) -> None:
        if not self.healthy:
            raise ServiceUnavailable("the event bus does not answer")

    def of_type(self, cls: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, cls)]

    def types(self) -> list[str]:
        """The CloudEvents type of every event, in order."""
        return [event_type(e) for e in self.events]

    def for_upload(self, upload_id: str) -> list[UploadEvent]:
        return [e for e in self.events if isinstance(e, UploadEvent) and e.upload_id == upload_id]

    def clear(self) -> None:
        self.events.clear()
        self.refused.clear()


class GatedSink(RecordingEventSink):
    """Holds the events of the types in `gates` until their gate is opened; logs every call
    (`("call", type)`) and every acceptance (`("accepted", type)`)."""

    def __init__(self) -> None:
        super().__init__()
        self.gates: dict[type[Event], asyncio.Event] = {}
        self.log: list[tuple[str, type[Event]]] = []

    def gate(self, kind: type[Event]) -> asyncio.Event:
        return self.gates.setdefault(kind, asyncio.Event())

    def calls(self, kind: type[Event]) -> int:
        """How many events of `kind` the sink was handed (accepted or still held)."""
        return self.log.count(("call", kind))

    async def emit(self, event: Event) -> None:
        self.log.append(("call", type(event)))
        gate = self.gates.get(type(event))
        if gate is not None:
            await gate.wait()
        await super().emit(event)
        self.log.append(("accepted", type(event)))


if TYPE_CHECKING:
    # mypy proves the fake still satisfies its port when the port changes.
    _sink: EventSink = RecordingEventSink()
