"""Every record of one topic of the in-process bus, handed to a handler: a `TopicReader`.

The in-process twin of `infra.kafka.reader.KafkaTopicReader`: an owned
background task subscribes to the topic from the beginning, hands each record
to the handler (`infra.feeds.hand_over`) and sets `ready` once it has handed
over what the topic retained when it subscribed. With `since` (Unix seconds)
records appended before that time are passed over, not handed.

How it fails: a handler that raises is logged and its record skipped. When the
bus drops the subscription (the reader fell behind), the reader is unhealthy
for a moment and subscribes again from the beginning, so the handler sees
the retained records again: handlers of a topic reader keep the latest state
per key and must not mind. When the bus closes, the task ends and the reader
stays unhealthy ("the event bus closed"); started on a closed bus, `start`
returns at once and the reader is unhealthy. `stop` never hangs.
"""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType
from typing import TYPE_CHECKING, Final, Self

from infra.bus.eventbus import InProcessEventBus
from infra.bus.subscription import SubscriberDropped, Subscription
from infra.feeds import RecordHandler, TopicPartition, TopicReader, hand_over

log = logging.getLogger(__name__)

_RESUBSCRIBE_SECONDS: Final = 0.1
_ENDED = "the event bus closed"


class BusTopicReader:
    """`infra.feeds.TopicReader` over one topic of the in-process bus."""

    def __init__(
        self,
        bus: InProcessEventBus,
        topic: str,
        handler: RecordHandler,
        *,
        ready_timeout: float = 5.0,
        since: float | None = None,
    ) -> None:
        bus.end_offset(topic)  # an unknown topic fails here, not in the task
        self._bus = bus
        self._topic = topic
        self._handler = handler
        self._ready_timeout = ready_timeout
        self._since_ms = None if since is None else int(since * 1000)
        self._positions: dict[TopicPartition, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._healthy = False
        self._last_error: str | None = None

    @property
    def topic(self) -> str:
        return self._topic

    @property
    def ready(self) -> asyncio.Event:
        return self._ready

    @property
    def healthy(self) -> bool:
        return self._healthy and self._task is not None and not self._task.done()

    @property
    def last_error(self) -> str | None:
        return self._last_error

    def positions(self) -> dict[TopicPartition, int]:
        return self._positions

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start reading; wait (at most `ready_timeout`) until what the topic holds is read."""
        if self._task is not None:
            return
        self._ready.clear()
        self._healthy = True
        self._last_error = None
        self._positions[TopicPartition(self._topic, 0)] = self._bus.start_offset(self._topic)
        task = asyncio.create_task(self._read(), name=f"bus-reader-{self._topic}")
        task.add_done_callback(self._on_task_done)
        self._task = task
        caught_up = asyncio.create_task(self._ready.wait())
        # A task that ends at once (a closed bus) need not make start wait its full timeout.
        try:
            await asyncio.wait(
                [caught_up, task], timeout=self._ready_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            caught_up.cancel()
        if not self._ready.is_set() and not task.done():  # an ended task was logged already
            log.warning(
                "reader not caught up with %s after %g s; handing over what it has read",
                self._topic,
                self._ready_timeout,
            )

    async def stop(self) -> None:
        task, self._task = self._task, None
        self._healthy = False
        if task is not None:
            task.cancel()
            # Whatever the task ended with was logged by _on_task_done.
            await asyncio.wait([task])

    async def _read(self) -> None:
        while True:
            subscription = self._bus.subscribe(self._topic, from_beginning=True)
            try:
                await self._follow(subscription)
                return  # the bus closed
            except SubscriberDropped as error:
                # Replaying the topic rebuilds the handler's state; stale for a moment.
                self._healthy = False
                self._last_error = error.message
                log.warning("%s; reading %s again from the beginning", error, self._topic)
            finally:
                subscription.close()
            await asyncio.sleep(_RESUBSCRIBE_SECONDS)

    async def _follow(self, subscription: Subscription) -> None:
        self._healthy = True
        self._last_error = None
        if subscription.caught_up:
            self._mark_ready()
        partition = TopicPartition(self._topic, 0)
        async for record in subscription:
            self._positions[partition] = record.offset + 1
            if self._since_ms is None or record.timestamp >= self._since_ms:
                hand_over(self._handler, record)
            if subscription.caught_up:
                self._mark_ready()

    def _mark_ready(self) -> None:
        if not self._ready.is_set():
            log.info("reader caught up with %s", self._topic)
            self._ready.set()

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        self._healthy = False
        self._last_error = repr(error) if error else _ENDED
        if error is not None:
            log.error("the reader of %s stopped", self._topic, exc_info=error)
        else:
            log.info("the reader of %s stopped: %s", self._topic, _ENDED)


if TYPE_CHECKING:

    def _implements(reader: BusTopicReader) -> TopicReader:
        return reader
