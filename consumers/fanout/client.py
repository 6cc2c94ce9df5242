"""One WebSocket client of the live feed: a bounded send queue and a writer task of its own.

The hub never waits for a socket: it offers each message (`offer`), which
either queues it at once or refuses it when the queue is full; the hub then
closes the client as too slow (`kick`), and every other client goes on. The
writer task takes messages off the queue and sends them one at a time, so a
client whose TCP window is shut stalls only its own writer.

While a reconnecting client is replayed (`begin_replay` .. `end_replay`),
live messages the hub offers are held aside (bounded too) and let through
afterwards unless the replay already covered them: each live message names
its partition and offset, and the client drops those below its floor (the
offsets the replay read up to, or the cursor's when this replica is behind).

How it fails: never raises to the hub. A client is closed (once) with a
close code from `consumers.fanout.closecodes`; a close that cannot be
delivered within `close_timeout` (the peer reads nothing) aborts the
connection. A send that fails (the peer went away) ends the writer quietly.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from consumers.fanout import closecodes
from infra.feeds import TopicPartition
from infra.tokens import Principal

log = logging.getLogger(__name__)


class Connection(Protocol):
    """The socket under a client: aiohttp's WebSocketResponse in production, a fake in tests."""

    async def send_str(self, data: str) -> None: ...

    async def close(self, *, code: int, message: bytes) -> bool: ...

    def abort(self) -> None:
        """Drop the connection without a close frame."""
        ...


@dataclass(frozen=True)
class Outgoing:
    """A message for the client; `at` is the record it comes from, if any, for the floor."""

    text: str
    at: tuple[TopicPartition, int] | None = None
    recursor: Callable[[Mapping[TopicPartition, int]], str] | None = None
    """Re-encodes the message with another cursor (for a client whose floor is ahead)."""


@dataclass
class Scope:
    """What a client asked to see."""

    principal: Principal
    see_all: bool = False
    sessions: set[str] = field(default_factory=set)
    """When not empty, only these uploads (and the user's quota)."""

    def wants(self, user_id: str | None, session_id: str | None) -> bool:
        if not self.see_all and user_id != self.principal.user_id:
            return False
        return not self.sessions or session_id is None or session_id in self.sessions


class Client:
    def __init__(
        self,
        connection: Connection,
        scope: Scope,
        *,
        queue_size: int,
        close_timeout: float = 5.0,
        on_closed: Callable[[Client, int], None] | None = None,
    ) -> None:
        if queue_size < 1:
            raise ValueError("a client's queue holds at least one message")
        self.scope = scope
        self._connection = connection
        self._queue: deque[str] = deque()
        self._queue_size = queue_size
        self._close_timeout = close_timeout
        self._on_closed = on_closed
        self._wakeup = asyncio.Event()
        self._room = asyncio.Event()
        self._closing: tuple[int, str] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._held: deque[Outgoing] | None = None
        self.floor: dict[TopicPartition, int] = {}
        self.sent = 0

    @property
    def user_id(self) -> str:
        return self.scope.principal.user_id

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def closing(self) -> bool:
        return self._closing is not None

    @property
    def replaying(self) -> bool:
        return self._held is not None

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write(), name=f"ws-writer-{self.user_id}")
        self._writer.add_done_callback(self._closed)

    async def wait_closed(self) -> None:
        if self._writer is not None:
            await asyncio.wait([self._writer])

    # The hub's side: never awaits.

    def offer(self, message: Outgoing) -> bool:
        """Queue a live message; False when the client cannot take it (it is then kicked)."""
        if self._closing is not None:
            return True
        if self._held is not None:
            if len(self._held) >= self._queue_size * 4:
                return False
            self._held.append(message)
            return True
        if message.at is not None and message.at[1] < self.floor.get(message.at[0], 0):
            return True  # the replay sent it already
        return self._push(self._with_floor(message))

    def kick(self, code: int, reason: str) -> None:
        """Close the client with `code` once its writer is free; never waits."""
        if self._closing is not None:
            return
        self._closing = (code, reason)
        self._queue.clear()
        self._wakeup.set()
        self._room.set()
        # A writer stuck in a send (the peer reads nothing) would never get to the close.
        asyncio.get_running_loop().call_later(2 * self._close_timeout, self._abort_if_stuck)

    # The replay's side: runs in the client's own task and may wait for room.

    def begin_replay(self) -> None:
        self._held = deque()

    async def put(self, text: str) -> None:
        """Queue a replayed message, waiting while the queue is full."""
        while len(self._queue) >= self._queue_size and self._closing is None:
            self._room.clear()
            await self._room.wait()
        if self._closing is None:
            self._push(text)

    def end_replay(self, floor: Mapping[TopicPartition, int]) -> bool:
        """Let the held live messages through above `floor`; False when they do not fit."""
        self.floor = dict(floor)
        held, self._held = self._held or deque(), None
        return all(self.offer(message) for message in held)

    # Internals.

    def _push(self, text: str) -> bool:
        if len(self._queue) >= self._queue_size:
            return False
        self._queue.append(text)
        self._wakeup.set()
        return True

    def _with_floor(self, message: Outgoing) -> str:
        """The message's text, its cursor raised to the floor where the floor is ahead."""
        if not self.floor or message.recursor is None:
            return message.text
        return message.recursor(self.floor)

    async def _write(self) -> None:
        try:
            while True:
                while not self._queue and self._closing is None:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                if self._closing is not None:
                    break
                text = self._queue.popleft()
                self._room.set()
                await self._connection.send_str(text)
                self.sent += 1
        except (ConnectionError, RuntimeError) as error:
            # The peer went away (aiohttp raises ClientConnectionResetError, a ConnectionError).
            log.debug("a WebSocket send to %s failed: %s", self.user_id, error)
            self._closing = self._closing or (closecodes.GOING_AWAY, "connection lost")
        finally:
            code, reason = self._closing or (closecodes.GOING_AWAY, "closed")
            await self._close(code, reason)

    async def _close(self, code: int, reason: str) -> None:
        try:
            async with asyncio.timeout(self._close_timeout):
                await self._connection.close(code=code, message=reason.encode())
        except (TimeoutError, ConnectionError, RuntimeError):
            self._connection.abort()

    def _abort_if_stuck(self) -> None:
        if self._writer is not None and not self._writer.done():
            log.info("aborting the connection of %s: it takes nothing", self.user_id)
            self._connection.abort()
            self._writer.cancel()

    def _closed(self, writer: asyncio.Task[None]) -> None:
        if not writer.cancelled() and writer.exception() is not None:
            log.error("the writer of %s failed", self.user_id, exc_info=writer.exception())
        code = self._closing[0] if self._closing else closecodes.GOING_AWAY
        if self._on_closed is not None:
            on_closed, self._on_closed = self._on_closed, None
            on_closed(self, code)
