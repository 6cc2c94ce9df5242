"""`stream_upload` over the in-memory fakes: the rig the pipeline tests share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from ingest.model import UploadResult, UploadTarget
from ingest.pipeline.budget import MemoryBudget
from ingest.pipeline.config import PipelineConfig
from ingest.pipeline.events import progress_sent
from ingest.pipeline.stream import Interrupt, stream_upload
from tests.fakes import (
    MemoryMultipartUpload,
    MemoryObjectStore,
    RecordingEventSink,
    ScriptedBody,
    upload_target,
)

PART = 64


def make_target(**changes: Any) -> UploadTarget:
    # A maximum that fits in 10,000 parts of PART bytes, so PART is not raised.
    return upload_target(**{"max_size": PART * 10_000, **changes})


@dataclass
class PipelineRig:
    store: MemoryObjectStore = field(default_factory=MemoryObjectStore)
    sink: RecordingEventSink = field(default_factory=RecordingEventSink)
    budget: MemoryBudget = field(default_factory=lambda: MemoryBudget(1 << 20))
    config: PipelineConfig = field(
        default_factory=lambda: PipelineConfig(
            part_size=PART, parts_in_flight=4, progress_interval=3600.0
        )
    )
    interrupt: Interrupt = field(default_factory=Interrupt)
    duplicates: dict[tuple[str, str], str] = field(default_factory=dict)
    user_id: str = "user-1"
    """The user of the rig's targets, whose files `claim_original` records."""
    first_sequence: int = 0

    async def claim_original(self, result: UploadResult) -> UploadResult | None:
        """Like the duplicate index: the first result recorded for the bytes is the original."""
        key = (self.user_id, result.sha256)
        earlier = self.duplicates.setdefault(key, result.video_id)
        if earlier == result.video_id:
            return None
        return msgspec.structs.replace(result, video_id=earlier, s3_key=f"earlier/{earlier}")

    async def run(self, target: UploadTarget, body: ScriptedBody, **kwargs: Any) -> UploadResult:
        """`stream_upload` of `body`; `kwargs` override its other arguments."""
        arguments: dict[str, Any] = {
            "first_sequence": self.first_sequence,
            "claim_original": self.claim_original,
            **kwargs,
        }
        try:
            return await self._stream(target, body, arguments)
        finally:
            # Progress is sent in the background; the tests look at every event.
            await progress_sent()

    async def _stream(
        self, target: UploadTarget, body: ScriptedBody, arguments: dict[str, Any]
    ) -> UploadResult:
        return await stream_upload(
            target,
            body.chunks(),
            store=self.store,
            sink=self.sink,
            budget=self.budget,
            config=self.config,
            interrupt=self.interrupt,
            **arguments,
        )

    def only_upload(self) -> MemoryMultipartUpload:
        assert len(self.store.uploads) == 1
        return self.store.uploads[0]
