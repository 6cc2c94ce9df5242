"""The event journal's files: order, crash recovery (torn or damaged tails), bounds, group commit.

`SegmentLog` is synchronous and tested directly (these tests are the worker thread);
`Journal` is tested from the event loop, as the sink uses it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from infra.errors import JournalFull, ServiceUnavailable
from ingest.adapters.journal.segments import (
    CURSOR,
    HEADER_BYTES,
    SUFFIX,
    JournalLocked,
    SegmentLog,
    encode_record,
)
from ingest.adapters.journal.store import Journal, JournalLimits


def opened(directory: Path, segment_bytes: int = 1 << 20) -> SegmentLog:
    log = SegmentLog(directory, segment_bytes=segment_bytes)
    log.open()
    return log


def everything(log: SegmentLog) -> list[tuple[int, bytes]]:
    records, _ = log.read(10_000, 1 << 30)
    return [(record.sequence, record.payload) for record in records]


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"*{SUFFIX}"))


def test_records_come_back_in_order_across_segments_and_restarts(tmp_path: Path) -> None:
    log = opened(tmp_path, segment_bytes=200)
    for n in range(20):
        log.append([f"event-{n}".encode(), f"event-{n}b".encode()], written_at=1000.0 + n)
    assert len(segments(tmp_path)) > 3
    expected = [
        (n + 1, p)
        for n, p in enumerate(f"event-{i}{s}".encode() for i in range(20) for s in ("", "b"))
    ]
    assert everything(log) == expected
    assert log.pending == 40
    log.close()

    again = opened(tmp_path, segment_bytes=200)
    assert everything(again) == expected
    assert again.oldest_at == 1000.0
    again.append([b"after"], written_at=2000.0)
    assert everything(again)[-1] == (41, b"after")
    again.close()


def test_a_torn_record_at_the_tail_is_cut_off_and_writing_goes_on_after_it(
    tmp_path: Path,
) -> None:
    log = opened(tmp_path)
    log.append([b"one", b"two", b"three"], written_at=1.0)
    log.close()
    [segment] = segments(tmp_path)
    good = segment.stat().st_size
    whole = encode_record(4, 1.0, b"four: never finished")
    for torn in (whole[: HEADER_BYTES - 3], whole[:-5]):
        with segment.open("ab") as file:
            file.write(torn)
        recovered = opened(tmp_path)
        assert [p for _, p in everything(recovered)] == [b"one", b"two", b"three"]
        assert segment.stat().st_size == good
        recovered.close()

    recovered = opened(tmp_path)
    recovered.append([b"four"], written_at=2.0)
    assert everything(recovered)[-1] == (4, b"four")
    recovered.close()


def test_a_record_whose_checksum_does_not_match_is_cut_off(tmp_path: Path) -> None:
    log = opened(tmp_path)
    log.append([b"kept"], written_at=1.0)
    log.append([b"damaged on disk"], written_at=1.0)
    log.close()
    [segment] = segments(tmp_path)
    data = bytearray(segment.read_bytes())
    data[-3] ^= 0xFF  # a bit flipped in the last record's payload
    segment.write_bytes(bytes(data))

    recovered = opened(tmp_path)
    assert everything(recovered) == [(1, b"kept")]
    assert segment.stat().st_size == HEADER_BYTES + len(b"kept")
    recovered.close()


def test_acknowledged_records_are_not_read_again_and_their_segments_are_deleted(
    tmp_path: Path,
) -> None:
    log = opened(tmp_path, segment_bytes=100)
    for n in range(10):
        log.append([f"record-{n}".encode()], written_at=float(n))
    first, end = log.read(4, 1 << 20)
    assert [r.sequence for r in first] == [1, 2, 3, 4]
    log.acknowledge(end)
    assert log.pending == 6
    assert log.oldest_at == 4.0
    # The segment of records 1-3 is gone; the one holding record 4 stays until all of it is sent.
    assert int(segments(tmp_path)[0].stem) == 4
    assert (tmp_path / CURSOR).read_text() == "4"
    log.close()

    again = opened(tmp_path, segment_bytes=100)
    assert [s for s, _ in everything(again)] == [5, 6, 7, 8, 9, 10]
    _, end = again.read(100, 1 << 20)
    again.acknowledge(end)
    assert again.pending == 0
    assert again.oldest_at is None
    assert segments(tmp_path) == []
    again.append([b"next"], written_at=20.0)
    assert everything(again) == [(11, b"next")]
    again.close()

    # Sequence numbers go on after a restart even when every segment was deleted.
    last = opened(tmp_path, segment_bytes=100)
    _, end = last.read(100, 1 << 20)
    last.acknowledge(end)
    last.close()
    assert opened(tmp_path).append([b"later"], written_at=30.0) == 12


def test_records_appended_between_a_read_and_its_acknowledgement_are_read_next(
    tmp_path: Path,
) -> None:
    log = opened(tmp_path)
    log.append([b"one", b"two"], written_at=1.0)
    records, end = log.read(100, 1 << 20)  # to the end of the segment still written to
    log.append([b"three"], written_at=2.0)
    log.acknowledge(end)
    assert [(r.sequence, r.payload) for r in records] == [(1, b"one"), (2, b"two")]
    assert everything(log) == [(3, b"three")]
    assert log.pending == 1
    log.close()


def test_a_second_live_process_cannot_open_the_same_directory(tmp_path: Path) -> None:
    first = opened(tmp_path)
    with pytest.raises(JournalLocked):
        opened(tmp_path)
    first.close()
    opened(tmp_path).close()


LIMITS = JournalLimits(max_bytes=64 * 1024, max_age=60.0, segment_bytes=4096)


async def test_concurrent_appends_share_fsyncs_and_keep_their_order(tmp_path: Path) -> None:
    journal = Journal(tmp_path, LIMITS)
    await journal.open()
    try:
        await asyncio.gather(*(journal.append(f"{n:04d}".encode()) for n in range(200)))
        assert journal.pending == 200
        assert journal.commits < 200
        batch = await journal.read(1000)
        assert [r.payload for r in batch.records] == [f"{n:04d}".encode() for n in range(200)]
        await journal.acknowledge(batch)
        assert journal.pending == 0
    finally:
        await journal.close()


async def test_bounds_refuse_new_uploads_before_refusing_events_and_never_drop(
    tmp_path: Path,
) -> None:
    now = [1000.0]
    journal = Journal(tmp_path, LIMITS, clock=lambda: now[0])
    await journal.open()
    try:
        payload = b"x" * 1000
        appended = 0
        while journal.has_room():
            await journal.append(payload)
            appended += 1
        # Past the admission share, events of running uploads are still taken...
        assert journal.size >= LIMITS.max_bytes * 0.9
        while journal.size + len(payload) + HEADER_BYTES <= LIMITS.max_bytes:
            await journal.append(payload)
            appended += 1
        # ...up to the bound itself, then refused: nothing already accepted is dropped.
        with pytest.raises(JournalFull) as full:
            await journal.append(payload)
        assert full.value.retriable
        batch = await journal.read(10_000, 1 << 30)
        assert len(batch.records) == appended == journal.pending

        await journal.acknowledge(batch)
        assert journal.has_room()
        await journal.append(b"old")
        now[0] += LIMITS.max_age + 1
        assert journal.oldest_age() == pytest.approx(LIMITS.max_age + 1)
        assert not journal.has_room()
    finally:
        await journal.close()


async def test_opening_a_directory_held_by_another_journal_is_refused(tmp_path: Path) -> None:
    first = Journal(tmp_path, LIMITS)
    await first.open()
    try:
        with pytest.raises(ServiceUnavailable, match="another live process"):
            await Journal(tmp_path, LIMITS).open()
    finally:
        await first.close()
