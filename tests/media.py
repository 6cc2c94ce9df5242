"""Generated test "videos": a real container signature followed by deterministic bytes.

Large files are generated chunk by chunk and never held whole, like the
clients the service is built for.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

MiB = 1024 * 1024

# An ISO-BMFF `ftyp` box (mp4): size, "ftyp", major brand, minor version, compatible brands.
MP4_HEAD = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
MOV_HEAD = b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00qt  "
NOT_A_VIDEO = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + b"0" * 64


def fake_video_chunks(
    size: int, *, seed: int = 1, chunk: int = MiB, head: bytes = MP4_HEAD
) -> Iterator[bytes]:
    rng = random.Random(seed)
    sent = 0
    first = True
    while sent < size:
        n = min(chunk, size - sent)
        data = rng.randbytes(n)
        if first:
            data = (head + data[len(head) :])[:n]
            first = False
        sent += n
        yield data


def sha256_of(size: int, *, seed: int = 1, chunk: int = MiB, head: bytes = MP4_HEAD) -> str:
    digest = hashlib.sha256()
    for data in fake_video_chunks(size, seed=seed, chunk=chunk, head=head):
        digest.update(data)
    return digest.hexdigest()


async def async_chunks(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    for data in chunks:
        yield data


def fake_video(size: int, *, seed: int = 1, head: bytes = MP4_HEAD) -> bytes:
    """A whole small file, for tests of small uploads only."""
    return b"".join(fake_video_chunks(size, seed=seed, head=head))


def write_fake_video(path: Path, size: int, *, seed: int = 1) -> str:
    """Write a generated video of `size` bytes to `path`, a chunk at a time; its SHA-256."""
    digest = hashlib.sha256()
    with path.open("wb") as out:
        for data in fake_video_chunks(size, seed=seed):
            digest.update(data)
            out.write(data)
    return digest.hexdigest()
