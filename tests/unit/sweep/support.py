"""What the sweep tests share: a sweeper over the tus rig's state (optionally over a document
store whose calls race), what a killed instance leaves behind (a claimed session with
stored parts), and readers of what the sweep left."""

from __future__ import annotations

import asyncio
import random
from types import EllipsisType
from typing import Any

from infra import layout
from ingest.auth import Principal
from ingest.model import UploadSession
from ingest.pipeline.config import PipelineConfig
from ingest.pipeline.hashing import part_checksum
from ingest.ports import Versioned
from ingest.usecases.duplicates import DuplicateIndex
from ingest.usecases.instances import Heartbeats
from ingest.usecases.sessions import SessionService
from ingest.usecases.sweep.complete import Completer
from ingest.usecases.sweep.settle import Settler
from ingest.usecases.sweep.sweeper import Sweeper
from ingest.usecases.tus.lifecycle import Lifecycle
from ingest.usecases.tus.state import TusSessions
from schemas import UploadCancelled, UploadFailed
from schemas.api import CreateUploadRequest
from tests.fakes import MemoryDocumentStore, video_bytes
from tests.unit.test_tus_support import (
    DEAD_AFTER,
    PART,
    TTL,
    TusRig,
)

ANN = Principal("ann", frozenset())


class RacingDocuments:
    """The rig's document store, each call delayed by a random moment so that concurrent
    sweepers interleave between their reads and their compare-and-swaps."""

    def __init__(self, inner: MemoryDocumentStore, seed: int) -> None:
        self._inner = inner
        self._random = random.Random(seed)

    async def _pause(self) -> None:
        await asyncio.sleep(self._random.uniform(0, 0.003))

    async def create(self, key: str, data: bytes) -> str:
        await self._pause()
        return await self._inner.create(key, data)

    async def read(self, key: str) -> Versioned | None:
        await self._pause()
        return await self._inner.read(key)

    async def replace(self, key: str, data: bytes, *, version: str) -> str:
        await self._pause()
        return await self._inner.replace(key, data, version=version)

    async def list_keys(self, prefix: str) -> list[str]:
        await self._pause()
        return await self._inner.list_keys(prefix)

    async def delete(self, key: str) -> None:
        await self._pause()
        await self._inner.delete(key)


PIPELINE = PipelineConfig(part_size=PART, parts_in_flight=2, progress_interval=3600.0)


def settler(rig: TusRig, documents: Any = None) -> Settler:
    """The settler a sweep over the rig's state uses."""
    sessions = SessionService(documents or rig.documents, ttl_seconds=TTL, clock=rig.clock)
    return Settler(sessions=sessions, store=rig.store, sink=rig.sink, pipeline=PIPELINE)


def sweeper(rig: TusRig, name: str = "sweeper", *, racing: int | None = None) -> Sweeper:
    """A sweeper of an instance `name` over the rig's shared state."""
    documents: Any = rig.documents if racing is None else RacingDocuments(rig.documents, racing)
    sessions = SessionService(documents, ttl_seconds=TTL, clock=rig.clock)
    pipeline = PIPELINE
    tus = rig.services(name).tus
    assert tus is not None

    return Sweeper(
        documents=documents,
        sessions=sessions,
        heartbeats=Heartbeats(
            documents, instance_id=name, dead_after_seconds=DEAD_AFTER, clock=rig.clock
        ),
        settler=settler(rig, documents),
        completer=Completer(
            sessions=sessions,
            documents=documents,
            store=rig.store,
            sink=rig.sink,
            pipeline=pipeline,
        ),
        tus=Lifecycle(
            TusSessions(sessions, documents, rig.clock),
            rig.store,
            rig.sink,
            DuplicateIndex(documents),
            pipeline,
            tus.limits,
            rig.clock,
        ),
        clock=rig.clock,
    )


async def claimed_by(rig: TusRig, instance_id: str, request: CreateUploadRequest) -> UploadSession:
    """A one-request session created for ANN and claimed by `instance_id`."""
    sessions = SessionService(rig.documents, ttl_seconds=TTL, clock=rig.clock)
    session = await sessions.create(ANN, request, protocol="stream", file_format="mp4")
    claimed, _ = await sessions.claim(session.session_id, ANN, instance_id=instance_id)
    return claimed


async def streaming_on(rig: TusRig, instance_id: str, *, parts: int = 2) -> UploadSession:
    """A session claimed by `instance_id`, with `parts` parts stored: what a streamer killed
    mid-upload leaves behind."""
    claimed = await claimed_by(
        rig, instance_id, CreateUploadRequest(filename="clip.mp4", expected_file_size=10 * PART)
    )
    upload = await rig.store.start_multipart(claimed.s3_key, content_type=None, metadata={})
    for number in range(1, parts + 1):
        data = video_bytes(PART, seed=number)
        await upload.upload_part(number, data, part_checksum(data))
    return claimed


async def stored_whole_by(
    rig: TusRig,
    instance_id: str,
    data: bytes,
    *,
    declared: int | EllipsisType | None = ...,
    file_hash: str | None = None,
) -> UploadSession:
    """A session claimed by `instance_id`, whose file `data` is stored whole, unrecorded:
    what a streamer killed between storing the file and recording it leaves behind. The
    session declares `len(data)` bytes unless `declared` says otherwise."""
    claimed = await claimed_by(
        rig,
        instance_id,
        CreateUploadRequest(
            filename="clip.mp4",
            expected_file_size=len(data) if declared is ... else declared,
            file_hash=file_hash,
            metadata={"camera": "a"},
        ),
    )
    upload = await rig.store.start_multipart(claimed.s3_key, content_type=None, metadata={})
    parts = []
    for number, at in enumerate(range(0, len(data), PART), start=1):
        piece = data[at : at + PART]
        parts.append(await upload.upload_part(number, piece, part_checksum(piece)))
    await upload.complete(parts)
    return claimed


async def stored(rig: TusRig, session_id: str) -> UploadSession:
    sessions = SessionService(rig.documents, ttl_seconds=TTL, clock=rig.clock)
    session, _ = await sessions.load(session_id)
    return session


def open_entries(rig: TusRig) -> set[str]:
    prefix = layout.open_sessions_prefix()
    return {k[len(prefix) :] for k in rig.documents.snapshot() if k.startswith(prefix)}


def terminal_events(rig: TusRig, upload_id: str) -> list[UploadFailed | UploadCancelled]:
    return [e for e in rig.events(upload_id) if isinstance(e, UploadFailed | UploadCancelled)]
