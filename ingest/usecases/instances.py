"""Instance heartbeats: which `ingest serve` processes are alive, as anyone can tell from S3.

Every serving process writes a small document, `instances/<id>`, every few
seconds (`Heartbeats.run`) and removes it when it stops cleanly. An instance is
dead when its heartbeat is older than `dead_after` by the reader's wall clock,
or when it has none: a killed process stops beating, and whoever reads next
knows. The threshold must cover the clock skew between machines and a few
missed beats (an S3 hiccup), or a living instance would be judged dead and its
uploads failed under it.

How it fails: `beat`, `liveness` and `is_alive` raise what the document store
raises (a sweep that cannot tell who is alive must not act); `run` logs a
failed beat and tries again on the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import msgspec

from infra import layout
from ingest.errors import IngestError, VersionConflict
from ingest.ports import DocumentStore
from ingest.usecases.sessions import utc_now

log = logging.getLogger(__name__)


class Heartbeat(msgspec.Struct, frozen=True, kw_only=True):
    instance_id: str
    beat_at: datetime
    started_at: datetime


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Heartbeat)


@dataclass(frozen=True)
class Liveness:
    """The heartbeats as they were read at `now`."""

    beats: Mapping[str, datetime]
    """Last beat by instance key segment (`layout.instance_segment`)."""
    now: datetime
    dead_after: timedelta

    def alive(self, instance_id: str) -> bool:
        return self.segment_alive(layout.instance_segment(instance_id))

    def segment_alive(self, segment: str) -> bool:
        beat = self.beats.get(segment)
        return beat is not None and self.now - beat < self.dead_after

    def long_dead(self) -> list[str]:
        """Segments whose heartbeat is so old that its document can go: the instance has been
        silent ten times longer than the threshold, so every upload it held was ended."""
        return [s for s, beat in self.beats.items() if self.now - beat >= 10 * self.dead_after]


class Heartbeats:
    def __init__(
        self,
        documents: DocumentStore,
        *,
        instance_id: str,
        dead_after_seconds: float,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._documents = documents
        self.instance_id = instance_id
        self._dead_after = timedelta(seconds=dead_after_seconds)
        self._clock = clock
        self._key = layout.instance_heartbeat(instance_id)
        self._started_at = clock()
        self._version: str | None = None

    async def beat(self) -> None:
        """Say this instance is alive now."""
        data = _encoder.encode(
            Heartbeat(
                instance_id=self.instance_id, beat_at=self._clock(), started_at=self._started_at
            )
        )
        if self._version is not None:
            try:
                self._version = await self._documents.replace(
                    self._key, data, version=self._version
                )
                return
            except VersionConflict:
                pass  # removed by a sweep after a long silence: written anew below
        try:
            self._version = await self._documents.create(self._key, data)
        except VersionConflict:
            # Left by an earlier attempt whose answer was lost: take it over.
            current = await self._documents.read(self._key)
            if current is None:
                raise
            self._version = await self._documents.replace(self._key, data, version=current.version)

    async def run(self, interval_seconds: float) -> None:
        """Beat every `interval_seconds` until cancelled; then remove the heartbeat."""
        try:
            while True:
                await asyncio.sleep(interval_seconds)
                try:
                    await self.beat()
                except IngestError as error:
                    log.warning("could not write the heartbeat of %s: %s", self.instance_id, error)
        finally:
            await asyncio.shield(self.retire())

    async def retire(self) -> None:
        """Remove the heartbeat: this instance stops (and holds no upload any more)."""
        with contextlib.suppress(IngestError):
            await self._documents.delete(self._key)
        self._version = None

    async def liveness(self) -> Liveness:
        prefix = layout.instances_prefix()
        beats: dict[str, datetime] = {}
        for key in await self._documents.list_keys(prefix):
            stored = await self._documents.read(key)
            if stored is None:
                continue
            try:
                beats[key[len(prefix) :]] = _decoder.decode(stored.data).beat_at
            except msgspec.DecodeError:
                log.warning("ignoring an unreadable heartbeat %s", key)
        return Liveness(beats, self._clock(), self._dead_after)

    async def is_alive(self, instance_id: str) -> bool:
        if instance_id == self.instance_id:
            return True
        stored = await self._documents.read(layout.instance_heartbeat(instance_id))
        if stored is None:
            return False
        try:
            beat_at = _decoder.decode(stored.data).beat_at
        except msgspec.DecodeError:
            return False
        return self._clock() - beat_at < self._dead_after

    async def forget(self, segment: str) -> None:
        await self._documents.delete(layout.instances_prefix() + segment)
