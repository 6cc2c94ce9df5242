"""Whole-file and per-part SHA-256, computed in order, off the event loop."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import random
import threading
from typing import Any

import pytest

from ingest.pipeline import hashing
from ingest.pipeline.hashing import HashChainBroken, StreamHasher, part_checksum


def test_part_checksum_is_base64_crc32c() -> None:
    # CRC-32C's published check value: the CRC of "123456789" is 0xE3069283.
    assert part_checksum(b"123456789") == base64.b64encode(bytes.fromhex("e3069283")).decode()
    assert part_checksum(b"") == base64.b64encode(bytes(4)).decode()


async def test_parts_submitted_together_are_hashed_in_order() -> None:
    rng = random.Random(5)
    parts = [rng.randbytes(rng.randrange(0, 300_000)) for _ in range(40)]
    hasher = StreamHasher()
    tasks = [hasher.submit(part) for part in parts]
    checksums = await asyncio.gather(*tasks)
    assert checksums == [part_checksum(p) for p in parts]
    assert await hasher.hexdigest() == hashlib.sha256(b"".join(parts)).hexdigest()
    assert hasher.bytes_submitted == sum(map(len, parts))


async def test_empty_upload_digest() -> None:
    assert await StreamHasher().hexdigest() == hashlib.sha256(b"").hexdigest()


async def test_hashing_runs_in_a_worker_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[int] = []
    real = hashing._hash_part

    def spy(whole: Any, data: bytes, start: int) -> str:
        threads.append(threading.get_ident())
        return real(whole, data, start)

    monkeypatch.setattr(hashing, "_hash_part", spy)
    hasher = StreamHasher()
    await asyncio.gather(hasher.submit(b"a" * 10_000), hasher.submit(b"b" * 10))
    assert len(threads) == 2
    assert threading.get_ident() not in threads


async def test_a_part_that_was_never_hashed_breaks_the_chain() -> None:
    hasher = StreamHasher()
    first = hasher.submit(b"first")
    second = hasher.submit(b"second")
    first.cancel()
    with pytest.raises(HashChainBroken):
        await second
    with pytest.raises(HashChainBroken):
        await hasher.hexdigest()


async def test_cancel_returns_the_running_jobs() -> None:
    hasher = StreamHasher()
    jobs = [hasher.submit(b"x" * 100) for _ in range(3)]
    pending = hasher.cancel()
    assert set(pending) == set(jobs)
    await asyncio.wait(pending)
    assert all(job.done() for job in jobs)


async def test_a_resumed_hash_skips_what_it_has_seen_and_takes_what_is_fed() -> None:
    """A tus PATCH: the carried hash covers the tail, which comes back ahead of the body."""
    before, tail, body, rest = b"p" * 50, b"tail", b"b" * 20_000, b"new tail"
    carried = hashlib.sha256(before + tail)
    hasher = StreamHasher(resume=carried, skip=len(tail))
    first = hasher.submit(tail + body[:10_000])
    second = hasher.submit(body[10_000:])
    hasher.feed(rest)
    assert await first == part_checksum(tail + body[:10_000])
    assert await second == part_checksum(body[10_000:])
    assert (await hasher.finish()).hexdigest() == hashlib.sha256(
        before + tail + body + rest
    ).hexdigest()
    assert hasher.fed == len(body) + len(rest)
    # The carried object itself is left as it was: this request might have been abandoned.
    assert carried.hexdigest() == hashlib.sha256(before + tail).hexdigest()


async def test_a_skip_longer_than_a_part_carries_into_the_next() -> None:
    hasher = StreamHasher(resume=hashlib.sha256(b"abcdef"), skip=6)
    hasher.submit(b"abcd")
    hasher.feed(b"efgh")
    assert await hasher.hexdigest() == hashlib.sha256(b"abcdefgh").hexdigest()
    assert hasher.fed == 2
