"""The bytes a benchmark sends: a video signature, then a fixed random block repeated.

Generating is nearly free, so the figures measure the service and S3, not the client.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

MiB = 1024 * 1024
_HEAD = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
_BLOCK = random.Random(42).randbytes(4 * MiB)
_FIRST = _HEAD + _BLOCK[len(_HEAD) :]


async def video_body(size: int, chunk: int = MiB) -> AsyncIterator[bytes]:
    sent = 0
    while sent < size:
        n = min(chunk, size - sent)
        offset = sent % len(_BLOCK)
        source = _FIRST if sent == 0 else _BLOCK
        end = min(offset + n, len(source))
        data = source[offset:end]
        sent += len(data)
        yield data
