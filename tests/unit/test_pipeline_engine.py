"""The part engine on its own: full parts stored, the short end handed back reserved, the
first failure winning, and every byte of the budget given back."""

from __future__ import annotations

import asyncio
import random

import pytest

from ingest.errors import StorageError
from ingest.pipeline.budget import MemoryBudget
from ingest.pipeline.engine import PartEngine
from ingest.pipeline.hashing import PartChecksums, part_checksum
from ingest.pipeline.parts import PartReader
from ingest.ports import MultipartUpload, StoredPart
from tests.fakes import MemoryObjectStore, ScriptedBody

P = 100


class Rig:
    def __init__(
        self, *, budget: int = 10 * P, in_flight: int = 2, first_part: int = 1, delay: float = 0.0
    ) -> None:
        self.store = MemoryObjectStore(part_delay=delay)
        self.budget = MemoryBudget(budget)
        self.reported: list[int] = []
        self.engine = PartEngine(
            part_size=P,
            budget=self.budget,
            parts_in_flight=in_flight,
            hasher=PartChecksums(),
            open_multipart=self._open,
            on_stored=self._stored,
            name="test",
            first_part=first_part,
        )

    async def _open(self) -> MultipartUpload:
        return await self.store.start_multipart("k", content_type=None, metadata={})

    async def _stored(self, part: StoredPart) -> None:
        self.reported.append(part.number)


@pytest.mark.parametrize(("size", "chunk"), [(5 * P + 42, 7), (5 * P, P), (4 * P + 1, 3 * P)])
async def test_full_parts_are_stored_and_the_short_end_comes_back_reserved(
    size: int, chunk: int
) -> None:
    rig = Rig()
    data = random.Random(size).randbytes(size)
    last = await rig.engine.store_full_parts(PartReader(ScriptedBody(data, chunk).chunks()))
    await rig.engine.drain()

    [upload] = rig.store.uploads
    full = size // P
    assert upload.part_sizes == [P] * full
    assert [upload.parts[n][1] for n in sorted(upload.parts)] == [
        data[i * P : (i + 1) * P] for i in range(full)
    ]
    assert sorted(rig.reported) == list(range(1, full + 1))
    assert rig.engine.gapless_bytes == full * P
    assert all(p.crc32c_b64 == part_checksum(upload.parts[p.number][1]) for p in rig.engine.stored)
    if size % P:
        assert last is not None
        assert last.data == data[full * P :]
        assert rig.budget.in_use == size % P  # held until the caller places it
    else:
        assert last is None
        assert rig.budget.in_use == 0
    rig.engine.release_all()
    assert rig.budget.in_use == 0


async def test_parts_are_numbered_from_the_first_part() -> None:
    rig = Rig(first_part=4)
    await rig.engine.store_full_parts(PartReader(ScriptedBody(bytes(3 * P), P).chunks()))
    await rig.engine.drain()
    assert sorted(rig.store.uploads[0].parts) == [4, 5, 6]
    assert rig.engine.gapless_bytes == 3 * P


async def test_a_body_without_a_full_part_opens_no_upload() -> None:
    rig = Rig()
    last = await rig.engine.store_full_parts(PartReader(ScriptedBody(bytes(P - 1), 10).chunks()))
    assert last is not None
    assert len(last) == P - 1
    assert rig.store.uploads == []


async def test_the_first_failure_wins_stops_the_reading_and_counts_the_gapless_prefix() -> None:
    rig = Rig(in_flight=4, delay=0.01)
    first, second = StorageError("part 3 refused"), StorageError("part 4 refused")
    rig.store.fail_parts.update({3: first, 4: second})
    body = ScriptedBody(bytes(20 * P), P)
    with pytest.raises(StorageError) as raised:
        await rig.engine.store_full_parts(PartReader(body.chunks()))
    assert raised.value is first
    assert body.sent < 20 * P
    await rig.engine.settle()
    assert rig.engine.failure is first  # part 4 failed too, later
    assert sorted(rig.store.uploads[0].part_attempts)[:4] == [1, 2, 3, 4]
    assert rig.engine.gapless_bytes == 2 * P
    rig.engine.release_all()
    assert rig.budget.in_use == 0


async def test_cancel_stops_the_parts_in_flight_and_release_all_frees_the_budget() -> None:
    rig = Rig(budget=3 * P, in_flight=8)
    rig.store.gate = asyncio.Event()  # parts never finish
    reading = asyncio.create_task(
        rig.engine.store_full_parts(PartReader(ScriptedBody(bytes(20 * P), P).chunks()))
    )
    async with asyncio.timeout(5):
        while rig.budget.waiting == 0:
            await asyncio.sleep(0.001)
    assert rig.budget.in_use == 3 * P  # the fourth part waits for memory, unread
    reading.cancel()
    stopping = rig.engine.cancel()
    await asyncio.wait([reading, *stopping])
    rig.engine.release_all()
    assert rig.store.parts_in_flight == 0
    assert rig.budget.in_use == 0
    assert rig.budget.waiting == 0
