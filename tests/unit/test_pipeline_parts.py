"""Part sizing and the re-buffering of arbitrary chunks into fixed-size parts."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterable

import pytest

from ingest.pipeline.parts import MAX_PART_SIZE, MAX_PARTS, PartReader, plan_part_size

MiB = 1024 * 1024
GiB = 1024 * MiB
TiB = 1024 * GiB


async def _chunks(pieces: Iterable[bytes]) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


def _split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize(
    ("declared", "max_size", "expected"),
    [
        (None, 500 * MiB, 8 * MiB),  # 63 parts at most: the base is enough
        (None, 5 * TiB, 525 * MiB),  # 5 TiB / 10,000 = 524.288 MiB, rounded up
        (100 * GiB, 5 * TiB, 11 * MiB),  # the declared size decides when known
        (8 * MiB * MAX_PARTS, 5 * TiB, 8 * MiB),  # exactly 10,000 parts
        (8 * MiB * MAX_PARTS + 1, 5 * TiB, 9 * MiB),
        (0, 500 * MiB, 8 * MiB),
        (None, 100 * TiB, MAX_PART_SIZE),  # capped at S3's 5 GiB
    ],
)
def test_plan_part_size(declared: int | None, max_size: int, expected: int) -> None:
    assert plan_part_size(declared, 8 * MiB, max_size) == expected


def test_planned_size_always_fits_the_part_limit() -> None:
    rng = random.Random(3)
    for _ in range(500):
        size = rng.randrange(1, 5 * TiB)
        part = plan_part_size(size, 5 * MiB, 5 * TiB)
        assert -(-size // part) <= MAX_PARTS
        assert part == 5 * MiB or part % MiB == 0


def test_a_small_base_is_kept_as_is_when_it_fits() -> None:
    assert plan_part_size(None, 64, 640_000) == 64
    with pytest.raises(ValueError, match="positive"):
        plan_part_size(None, 0, 10)


@pytest.mark.parametrize("chunk", [1, 3, 63, 64, 65, 128, 200, 10_000])
@pytest.mark.parametrize("size", [0, 1, 64, 640, 641, 1000])
async def test_parts_have_the_fixed_size_but_the_last(chunk: int, size: int) -> None:
    data = random.Random(size).randbytes(size)
    reader = PartReader(_chunks(_split(data, chunk)))
    parts = []
    while part := await reader.read_part(64):
        parts.append(part)
    assert b"".join(parts) == data
    assert [len(p) for p in parts[:-1]] == [64] * (len(parts) - 1)
    assert 0 < len(parts[-1]) <= 64 if parts else size == 0
    assert reader.at_eof
    assert reader.buffered == 0
    assert await reader.read_part(64) == b""


async def test_a_chunk_of_exactly_one_part_is_not_copied() -> None:
    chunk = bytes(range(64))
    reader = PartReader(_chunks([chunk]))
    assert await reader.read_part(64) is chunk


async def test_buffered_bytes_are_what_was_received_and_not_handed_out() -> None:
    reader = PartReader(_chunks([b"a" * 50, b"b" * 50, b"c" * 50]))
    part = await reader.read_part(60)
    assert part == b"a" * 50 + b"b" * 10
    # One chunk was read past the part, no more.
    assert reader.buffered == 40
    assert not reader.exhausted


async def test_peek_leaves_bytes_in_place_and_stops_at_the_end() -> None:
    reader = PartReader(_chunks([b"", b"ab", b"cdef", b"gh"]))
    assert await reader.peek(5) == b"abcde"
    assert await reader.peek(3) == b"abc"
    assert await reader.read_part(4) == b"abcd"
    assert await reader.peek(100) == b"efgh"
    assert reader.exhausted
    assert not reader.at_eof
    assert await reader.read_part(100) == b"efgh"
    assert reader.at_eof


async def test_errors_of_the_source_propagate() -> None:
    async def failing() -> AsyncIterator[bytes]:
        yield b"x" * 10
        raise ConnectionResetError("gone")

    reader = PartReader(failing())
    with pytest.raises(ConnectionResetError):
        await reader.read_part(64)
