"""An EventSink that never makes an upload wait on the bus: a durable journal in front of it.

`JournaledEventSink` decorates the sink of the bus (Kafka). A lifecycle event
is accepted once the bus has it or once it is fsynced into the local journal
(`store`), whichever comes first: while the journal is empty and the bus
answers, it goes straight to the bus (whose own send gives up quickly,
bounded); when the bus does not take it, or while the journal holds anything
at all, it goes into the journal, behind what is there, so the events of one
key keep their order. Progress events are never journaled (lossy by design):
one the bus cannot take at once is dropped and counted.

The relay (a task of this sink) sends the journal's records in order:
records of one key one after another, keys side by side, and acknowledges a
batch once the bus has all of it (then whole segments are deleted). While
the bus is away it tries one record every `retry_seconds` (with nothing to
send, it asks the bus's `check`); the bus's sink
rebuilds its client when that client has wedged. A restarted process takes
up what a killed one left in the same directory (a lock keeps two live
processes off one directory).

How it fails: `emit` raises JournalFull when the journal is at its byte
bound, EventDeliveryError when the disk refuses the write or the bus refuses
the event for good (not retriable: journaling it would block every event
behind it). `check_room` raises JournalFull when new uploads must wait. The
relay logs and retries every failure; one record the bus refuses for good is
retried with the rest, never dropped. `stop` sends what it can within its
bound; the rest stays on disk for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from types import TracebackType
from typing import Self

import msgspec

from infra.errors import JournalFull, ServiceUnavailable
from ingest.adapters.journal.store import Batch, Journal
from ingest.adapters.journal.watch import BusWatch
from ingest.ports import BacklogState, EventSink
from schemas import Event, UploadProgress, key_of

log = logging.getLogger(__name__)

JournalObserver = Callable[[str, int], None]
"""Told what happened to how many events: "journaled", "relayed" or "progress_dropped"."""

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Event)


class JournaledEventSink:
    def __init__(
        self,
        inner: EventSink,
        journal: Journal,
        *,
        retry_seconds: float = 1.0,
        summary_seconds: float = 60.0,
        batch_records: int = 256,
        observer: JournalObserver | None = None,
    ) -> None:
        self._inner = inner
        self._journal = journal
        self._retry_seconds = retry_seconds
        self._batch_records = batch_records
        self._observer = observer
        self.watch = BusWatch(summary_seconds=summary_seconds)
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        """Set while the journal holds nothing."""
        self._relay: asyncio.Task[None] | None = None
        self._summary_seconds = summary_seconds
        self._sent: set[int] = set()
        """Sequence numbers of the batch being relayed that the bus already has."""

    @property
    def journal(self) -> Journal:
        return self._journal

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
        await self._journal.open()
        if self._journal.pending:
            log.warning(
                "the event journal in %s holds %d events from an earlier run; sending them",
                self._journal.directory,
                self._journal.pending,
            )
        else:
            self._drained.set()
        self._relay = asyncio.create_task(self._run_relay(), name="journal-relay")

    async def stop(self, within: float = 10.0) -> None:
        """Send what the journal holds, for at most `within` seconds; the rest stays on disk."""
        relay, self._relay = self._relay, None
        if relay is None:
            return
        self._wake.set()
        drained = asyncio.ensure_future(self._drained.wait())
        await asyncio.wait([drained, relay], timeout=within, return_when=asyncio.FIRST_COMPLETED)
        drained.cancel()
        relay.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relay
        left = self._journal.pending
        await self._journal.close()
        if left:
            log.warning(
                "%d events stay in the event journal in %s; the next start sends them",
                left,
                self._journal.directory,
            )

    async def drained(self) -> None:
        """Return once the journal holds nothing (at once when it is empty)."""
        await self._drained.wait()

    # The port.

    async def emit(self, event: Event) -> None:
        if isinstance(event, UploadProgress):
            await self._emit_progress(event)
            return
        if self._journal.pending or not self.watch.up:
            await self._append(event)
            return
        try:
            await self._inner.emit(event)
        except ServiceUnavailable as error:
            if not error.retriable:
                raise
            self.watch.failed(error)
            await self._append(event)

    async def check(self) -> None:
        await self._inner.check()

    def check_room(self) -> None:
        if not self._journal.has_room():
            age = self._journal.oldest_age() or 0.0
            raise JournalFull(
                "the event journal cannot take on another upload until the bus has drained it",
                details={
                    "journal_bytes": self._journal.size,
                    "max_bytes": self._journal.limits.max_bytes,
                    "oldest_seconds": round(age, 1),
                    "max_age_seconds": self._journal.limits.max_age,
                },
            )

    def backlog(self) -> BacklogState:
        return BacklogState(
            broker_up=self.watch.up,
            events=self._journal.pending,
            bytes=self._journal.size,
            oldest_seconds=self._journal.oldest_age(),
            has_room=self._journal.has_room(),
        )

    async def _emit_progress(self, event: UploadProgress) -> None:
        if self.watch.up:
            try:
                await self._inner.emit(event)
                return
            except ServiceUnavailable as error:
                self.watch.failed(error)
        self.watch.dropped()
        self._tell("progress_dropped", 1)

    async def _append(self, event: Event) -> None:
        self._drained.clear()
        try:
            await self._journal.append(_encoder.encode(event))
        finally:
            if not self._journal.pending:
                self._drained.set()
        self._tell("journaled", 1)
        self._wake.set()

    def _tell(self, what: str, count: int) -> None:
        if self._observer is None:
            return
        try:
            self._observer(what, count)
        except Exception:
            log.exception("the journal observer failed on %s", what)

    # The relay.

    async def _run_relay(self) -> None:
        while True:
            try:
                await self._relay_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the journal relay failed; retrying in %g s", self._retry_seconds)
                await asyncio.sleep(self._retry_seconds)
            self.watch.summarize(
                self._journal.pending, self._journal.size, self._journal.oldest_age()
            )

    async def _relay_once(self) -> None:
        if not self._journal.pending and not self.watch.up:
            await self._probe_idle()
            return
        if not self._journal.pending:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._summary_seconds):
                    await self._wake.wait()
            return
        batch = await self._journal.read(self._batch_records)
        if not batch.records:
            # Accepted, but its fsync is still under way.
            await asyncio.sleep(0.005)
            return
        if await self._send(batch):
            await self._journal.acknowledge(batch)
            self._tell("relayed", len(batch.records))
            self._sent.clear()
            if not self._journal.pending:
                self._drained.set()
        else:
            await asyncio.sleep(self._retry_seconds)

    async def _probe_idle(self) -> None:
        """Nothing to send, but the bus was last seen away (a process started while it was
        down, a progress event it refused): ask it every `retry_seconds`, so that readiness
        and progress events learn it is back without waiting for a lifecycle event."""
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._retry_seconds):
                await self._wake.wait()
        if self._journal.pending:
            return
        try:
            await self._inner.check()
        except ServiceUnavailable:
            return
        self.watch.answered(0)

    async def _send(self, batch: Batch) -> bool:
        """Whether the bus now has every record of the batch (each key's in order)."""
        chains: dict[bytes | None, list[tuple[int, Event]]] = {}
        for record in batch.records:
            if record.sequence in self._sent:
                continue
            try:
                event = _decoder.decode(record.payload)
            except msgspec.DecodeError as error:
                log.error("journal record %d cannot be read; skipped: %s", record.sequence, error)
                self._sent.add(record.sequence)
                continue
            chains.setdefault(key_of(event), []).append((record.sequence, event))
        if not chains:
            return True
        if not self.watch.up:
            # A probe: one record, so a bus that is still away costs one attempt, not one a key.
            first = min(chains.values(), key=lambda chain: chain[0][0])
            if not await self._send_chain(first[:1]):
                return False
            self.watch.answered(self._journal.pending)
        outcomes = await asyncio.gather(*(self._send_chain(chain) for chain in chains.values()))
        return all(outcomes)

    async def _send_chain(self, chain: list[tuple[int, Event]]) -> bool:
        for sequence, event in chain:
            if sequence in self._sent:
                continue
            try:
                await self._inner.emit(event)
            except ServiceUnavailable as error:
                self.watch.failed(error)
                return False
            self._sent.add(sequence)
        return True
