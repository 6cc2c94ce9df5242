"""What an upload brings: container heads, `video_bytes`, a `ScriptedBody`, an `upload_target`."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec

from ingest.model import UploadTarget

MP4_HEAD = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
MOV_HEAD = b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00qt  "
AVI_HEAD = b"RIFF\x00\x00\x10\x00AVI LIST"
MKV_HEAD = (
    b"\x1a\x45\xdf\xa3\xa3\x42\x86\x81\x01\x42\xf7\x81\x01\x42\xf2\x81\x04\x42\xf3\x81\x08"
    b"\x42\x82\x88matroska\x42\x87\x81\x04\x42\x85\x81\x02"
)
WEBM_HEAD = (
    b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01\x42\xf2\x81\x04\x42\xf3\x81\x08"
    b"\x42\x82\x84webm\x42\x87\x81\x02\x42\x85\x81\x02"
)
HEADS: dict[str, bytes] = {
    "mp4": MP4_HEAD,
    "mov": MOV_HEAD,
    "avi": AVI_HEAD,
    "mkv": MKV_HEAD,
    "webm": WEBM_HEAD,
}


def video_bytes(size: int, *, fmt: str = "mp4", seed: int = 0) -> bytes:
    """`size` deterministic bytes that start like a `fmt` container (truncated if tiny)."""
    head = HEADS[fmt]
    return (head + random.Random(seed).randbytes(max(0, size - len(head))))[:size]


class ScriptedBody:
    """A request body that yields `data` in `chunk`-byte pieces, then ends as scripted.

    `then`: raised after the last chunk (a reset connection, a timeout...);
    `stall`: instead of ending, wait forever (a client gone quiet), setting `stalled`;
    `delay`: seconds before each chunk; `before_chunk(index)`: called before each
    chunk is yielded (index from 1), e.g. to move a fake clock.
    `sent` counts the bytes handed out: what the server has read.
    """

    def __init__(
        self,
        data: bytes,
        chunk: int = 100,
        *,
        then: BaseException | None = None,
        stall: bool = False,
        delay: float = 0.0,
        before_chunk: Callable[[int], None] | None = None,
    ) -> None:
        if chunk <= 0:
            raise ValueError("chunk must be positive")
        self.data = data
        self.chunk = chunk
        self.then = then
        self.stall = stall
        self.delay = delay
        self.before_chunk = before_chunk
        self.sent = 0
        self.started = False
        self.stalled = asyncio.Event()

    async def chunks(self) -> AsyncIterator[bytes]:
        self.started = True
        for index, at in enumerate(range(0, len(self.data), self.chunk), start=1):
            if self.before_chunk is not None:
                self.before_chunk(index)
            if self.delay:
                await asyncio.sleep(self.delay)
            piece = self.data[at : at + self.chunk]
            self.sent += len(piece)
            yield piece
        if self.then is not None:
            raise self.then
        if self.stall:
            self.stalled.set()
            await asyncio.Event().wait()


def upload_target(**changes: Any) -> UploadTarget:
    """An UploadTarget for user-1's upload upl-1 of an mp4, with `changes` applied."""
    target = UploadTarget(
        upload_id="upl-1",
        user_id="user-1",
        bucket="test-bucket",
        s3_key="dashboard-uploads/user-1/upl-1/clip.mp4",
        filename="clip.mp4",
        content_type="video/mp4",
        declared_format="mp4",
        allowed_formats=("mp4", "mov", "avi", "mkv", "webm"),
        protocol="stream",
        priority=7,
        auto_analyze=True,
        metadata={"camera": "front"},
        dashboard_context={"page": "library"},
        declared_size=None,
        max_size=1_000_000,
        min_size=0,
        quota_bytes_remaining=None,
    )
    return msgspec.structs.replace(target, **changes)
