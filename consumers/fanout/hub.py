"""The hub: every record the replica reads goes to the clients it concerns, by user and session.

One hub per replica. Its `handle` is the handler of the four topic readers
(uploads, progress, detections, quota): it decodes the record, updates the
live progress board, turns the event into the feed's message, stamps it with
the cursor of where the readers stand (`cursor_positions`, the record itself
included) and offers it to the owner's clients and to admins watching
everything. It never awaits: a client whose queue is full is kicked as too
slow (`closecodes.TOO_SLOW`) and the others carry on.

`register` admits a client within the limits (per user, in total) and
returns, in the same synchronous step, the positions from which it will get
live records: the replay reads up to exactly there, so nothing falls between
replay and live.

How it fails: a record that is not a valid event is logged and skipped (the
reader goes on); `register` raises LimitReached with the close code to use.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Protocol

from consumers.fanout import closecodes, cursor
from consumers.fanout.client import Client, Outgoing
from consumers.fanout.messages import notice, recursor, render, translate
from consumers.fanout.metrics import FanoutMetrics
from consumers.fanout.progress import ProgressBoard
from infra.feeds import Record, TopicPartition
from schemas import InvalidEvent, decode

log = logging.getLogger(__name__)


class Positioned(Protocol):
    """What the hub needs of a topic reader: where it stands."""

    def positions(self) -> Mapping[TopicPartition, int]: ...


class LimitReached(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Hub:
    def __init__(
        self,
        topics: Sequence[str],
        *,
        max_per_user: int,
        max_total: int,
        board: ProgressBoard,
        metrics: FanoutMetrics,
    ) -> None:
        self.topics = tuple(topics)
        self.board = board
        self.metrics = metrics
        self._max_per_user = max_per_user
        self._max_total = max_total
        self._readers: list[Positioned] = []
        self._handled: dict[TopicPartition, int] = {}
        self._by_user: defaultdict[str, set[Client]] = defaultdict(set)
        self._watch_all: set[Client] = set()
        self._count = 0

    @property
    def connections(self) -> int:
        return self._count

    def user_connections(self, user_id: str) -> int:
        return len(self._by_user.get(user_id, ()))

    def follow(self, reader: Positioned) -> None:
        """Take `reader`'s positions into the cursors (for partitions with no record yet)."""
        self._readers.append(reader)

    def cursor_positions(self) -> dict[TopicPartition, int]:
        """Per partition, the offset of the next record the hub will handle."""
        merged: dict[TopicPartition, int] = {}
        for reader in self._readers:
            for tp, offset in reader.positions().items():
                merged[tp] = max(offset, merged.get(tp, 0))
        for tp, offset in self._handled.items():
            merged[tp] = max(offset, merged.get(tp, 0))
        return merged

    def cursor(self, floor: Mapping[TopicPartition, int] | None = None) -> str:
        positions = self.cursor_positions()
        for tp, offset in (floor or {}).items():
            positions[tp] = max(offset, positions.get(tp, 0))
        return cursor.encode(positions, self.topics)

    # Clients.

    def register(self, client: Client) -> dict[TopicPartition, int]:
        """Admit `client` to live records; the positions its live feed starts from."""
        if self._count >= self._max_total:
            raise LimitReached(closecodes.SERVICE_FULL, "this replica is at its connection limit")
        if len(self._by_user[client.user_id]) >= self._max_per_user:
            raise LimitReached(
                closecodes.USER_LIMIT,
                f"at most {self._max_per_user} connections per user",
            )
        self._by_user[client.user_id].add(client)
        if client.scope.see_all:
            self._watch_all.add(client)
        self._count += 1
        self.metrics.connections.set(self._count)
        return self.cursor_positions()

    def unregister(self, client: Client) -> None:
        clients = self._by_user.get(client.user_id)
        if clients is None or client not in clients:
            return
        clients.discard(client)
        if not clients:
            del self._by_user[client.user_id]
        self._watch_all.discard(client)
        self._count -= 1
        self.metrics.connections.set(self._count)

    def heartbeat(self) -> None:
        """Offer every client a heartbeat carrying the cursor of now."""
        positions = self.cursor_positions()
        message = notice("heartbeat", None)
        outgoing = Outgoing(
            render(message, cursor.encode(positions, self.topics)),
            None,
            recursor(message, self.cursor),
        )
        for clients in list(self._by_user.values()):
            for client in list(clients):
                if client.replaying:
                    continue
                if client.floor:
                    # Once this replica has read past a floor, it no longer matters.
                    client.floor = {
                        tp: at for tp, at in client.floor.items() if positions.get(tp, 0) < at
                    }
                self._offer(client, outgoing)

    # Records.

    def handle(self, record: Record) -> None:
        """The topic readers' handler: one record to the clients it concerns."""
        tp = TopicPartition(record.topic, record.partition)
        if record.offset < self._handled.get(tp, 0):
            return  # read again (the bus re-reads a topic after dropping a slow reader)
        self._handled[tp] = record.offset + 1
        self.metrics.records.inc()
        if record.timestamp > 0:
            self.metrics.delay.observe(max(0.0, time.time() - record.timestamp / 1000))
        if record.value is None:
            return
        try:
            event = decode(record.value, record.headers)
        except InvalidEvent as error:
            log.warning("skipping a record the feed cannot read at %s: %s", _where(record), error)
            return
        if event is None:
            return
        self.board.apply(event)
        message = translate(event)
        if message is None:
            return
        recipients = [
            client
            for client in self._recipients(message.user_id)
            if client.scope.wants(message.user_id, message.session_id)
        ]
        if not recipients:
            return
        outgoing = Outgoing(
            render(message, self.cursor()), (tp, record.offset), recursor(message, self.cursor)
        )
        for client in recipients:
            self._offer(client, outgoing)

    def _recipients(self, user_id: str | None) -> list[Client]:
        owners = self._by_user.get(user_id, set()) if user_id is not None else set()
        return list(owners | self._watch_all)

    def _offer(self, client: Client, outgoing: Outgoing) -> None:
        if not client.offer(outgoing):
            self.metrics.too_slow.inc()
            log.info("closing a client of %s: too slow (%d queued)", client.user_id, client.queued)
            client.kick(closecodes.TOO_SLOW, "too slow: the send queue is full")


def _where(record: Record) -> str:
    return f"{record.topic}[{record.partition}]@{record.offset}"
