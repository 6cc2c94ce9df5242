"""The journal's files: append-only segments of checksummed records, and how far they are sent.

A directory holds segment files named by the sequence number of their first
record (`00000000000000000042.seg`), a cursor file `acknowledged` (the last
sequence number the bus has taken), and a `lock` file. Each record is a
header (magic, payload length, CRC-32 of length, sequence, time and payload,
sequence number, wall-clock time of writing) followed by its payload.
Sequence numbers rise by one from record to record and across segments.

`SegmentLog` is synchronous and not thread-safe: the journal (`store`) runs
every call in one worker thread of its own. `append` writes a batch and
fsyncs once (group commit); `read` returns the records after the head;
`acknowledge` moves the head, deletes every segment it has passed and writes
the cursor (not fsynced: after a crash it may be behind, and records are sent
again; consumers de-duplicate by event id).

How it fails: `open` recovers from a crash in the middle of a write: a
record cut short, or one whose checksum or sequence does not match, ends its
segment; the segment is truncated there (a torn write at the tail) and what
followed is logged as lost (corruption elsewhere). `append` raises OSError
when the disk refuses the write, after cutting the segment back to what it
held, so no half record stays behind. `JournalLocked` when another live
process holds the directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

log = logging.getLogger(__name__)

MAGIC: Final = b"JR"
_HEADER = struct.Struct("<2sIIQd")  # magic, payload length, crc32, sequence, written at
_CHECKED = struct.Struct("<IQd")  # what the checksum covers besides the payload
HEADER_BYTES: Final = _HEADER.size
MAX_PAYLOAD: Final = 16 * 1024 * 1024
"""A payload longer than this is taken for a damaged length field, not a record."""

SUFFIX: Final = ".seg"
CURSOR: Final = "acknowledged"
LOCK: Final = "lock"


class JournalLocked(OSError):
    """Another live process holds the journal directory."""


@dataclass(frozen=True)
class Record:
    sequence: int
    written_at: float
    payload: bytes


@dataclass(frozen=True)
class Position:
    """Just after a record: where reading goes on, and the last sequence number read."""

    segment: int
    """Index into the open segments."""
    offset: int
    sequence: int


@dataclass
class _Segment:
    path: Path
    first: int
    last: int
    """The last sequence number written; first - 1 while empty."""
    size: int


def encode_record(sequence: int, written_at: float, payload: bytes) -> bytes:
    crc = zlib.crc32(_CHECKED.pack(len(payload), sequence, written_at) + payload)
    return _HEADER.pack(MAGIC, len(payload), crc, sequence, written_at) + payload


def _read_record(file: BinaryIO) -> Record | None:
    """The next record, or None when what follows is not a whole, intact record."""
    header = file.read(HEADER_BYTES)
    if len(header) < HEADER_BYTES:
        return None
    magic, length, crc, sequence, written_at = _HEADER.unpack(header)
    if magic != MAGIC or length > MAX_PAYLOAD:
        return None
    payload = file.read(length)
    if len(payload) < length:
        return None
    if zlib.crc32(_CHECKED.pack(length, sequence, written_at) + payload) != crc:
        return None
    return Record(sequence, written_at, payload)


class SegmentLog:
    def __init__(self, directory: Path, *, segment_bytes: int) -> None:
        self.directory = directory
        self._segment_bytes = segment_bytes
        self._segments: list[_Segment] = []
        self._acknowledged = 0
        self._head = Position(0, 0, 0)
        self._writer: BinaryIO | None = None
        self._lock: int | None = None
        self._next = 1
        self._counts = (0, 0)
        self.oldest_at: float | None = None
        """When the oldest record not yet acknowledged was written (None: none is held)."""

    # Opening and recovery.

    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        self._acknowledged = self._read_cursor()
        expected: int | None = None
        for path in sorted(self.directory.glob(f"*{SUFFIX}")):
            segment = self._recover(path, expected)
            if segment is None:
                continue
            self._segments.append(segment)
            expected = segment.last + 1
        next_sequence = self._acknowledged + 1
        if self._segments:
            next_sequence = max(next_sequence, self._segments[-1].last + 1)
        # Segments wholly acknowledged before a crash (the cursor was written, the files not
        # yet removed) are removed now.
        self._forget_acknowledged()
        if not self._segments:
            self._acknowledged = next_sequence - 1
        self._head = self._find_head()
        self._peek_oldest()
        self._next = next_sequence
        self._count()

    def _take_lock(self) -> None:
        descriptor = os.open(self.directory / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            raise JournalLocked(
                f"the journal directory {self.directory} is held by another live process"
            ) from None
        self._lock = descriptor

    def _read_cursor(self) -> int:
        try:
            return int((self.directory / CURSOR).read_text().strip() or 0)
        except (OSError, ValueError):
            return 0

    def _recover(self, path: Path, expected: int | None) -> _Segment | None:
        try:
            first = int(path.stem)
        except ValueError:
            log.error("ignoring %s in the journal directory: not a segment name", path.name)
            return None
        last = first - 1
        good = 0
        with path.open("rb") as file:
            while (record := _read_record(file)) is not None and record.sequence == last + 1:
                last = record.sequence
                good = file.tell()
            size = path.stat().st_size
        if good < size:
            log.error(
                "journal segment %s: %d bytes after record %d are torn or damaged; cut off",
                path.name,
                size - good,
                last,
            )
            with path.open("r+b") as file:
                file.truncate(good)
                os.fsync(file.fileno())
        if expected is not None and first != expected:
            log.error("journal segment %s does not follow record %d", path.name, expected - 1)
        if last < first:
            path.unlink()
            return None
        return _Segment(path, first, last, good)

    def _find_head(self) -> Position:
        """Just after the last acknowledged record."""
        for index, segment in enumerate(self._segments):
            if segment.last > self._acknowledged:
                offset = 0
                if segment.first <= self._acknowledged:
                    with segment.path.open("rb") as file:
                        while (record := _read_record(file)) is not None:
                            offset = file.tell()
                            if record.sequence >= self._acknowledged:
                                break
                return Position(index, offset, self._acknowledged)
        return Position(len(self._segments), 0, self._acknowledged)

    # Writing.

    def append(self, payloads: list[bytes], written_at: float) -> int:
        """Write the records and fsync them; returns the last sequence number written."""
        segment = self._writable()
        assert self._writer is not None
        start = segment.size
        data = bytearray()
        sequence = segment.last
        for payload in payloads:
            sequence += 1
            data += encode_record(sequence, written_at, payload)
        try:
            self._writer.write(data)
            self._writer.flush()
            os.fsync(self._writer.fileno())
        except OSError:
            self._cut_back(segment, start)
            raise
        segment.size += len(data)
        segment.last = sequence
        self._next = sequence + 1
        if self.oldest_at is None:
            self.oldest_at = written_at
        self._count()
        return sequence

    def _writable(self) -> _Segment:
        if self._segments and self._writer is not None:
            segment = self._segments[-1]
            if segment.size < self._segment_bytes:
                return segment
        self._close_writer()
        if self._segments and self._segments[-1].size == 0:
            segment = self._segments[-1]
        else:
            path = self.directory / f"{self._next:020d}{SUFFIX}"
            segment = _Segment(path, self._next, self._next - 1, 0)
            self._segments.append(segment)
        self._writer = segment.path.open("ab")
        self._sync_directory()
        return segment

    def _cut_back(self, segment: _Segment, size: int) -> None:
        self._close_writer()
        with contextlib.suppress(OSError), segment.path.open("r+b") as file:
            file.truncate(size)
            os.fsync(file.fileno())

    def _close_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            with contextlib.suppress(OSError):
                writer.close()

    def _sync_directory(self) -> None:
        # A new segment's name must survive a crash as well as its records.
        descriptor = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)

    # Reading and acknowledging.

    def read(self, max_records: int, max_bytes: int) -> tuple[list[Record], Position]:
        """Up to `max_records` (and about `max_bytes`) records after the head, in order."""
        records: list[Record] = []
        position = self._head
        size = 0
        while len(records) < max_records and size < max_bytes:
            if position.segment >= len(self._segments):
                break
            segment = self._segments[position.segment]
            if position.offset >= segment.size:
                if position.segment + 1 >= len(self._segments):
                    # The end of the segment written to: more may still be appended to it.
                    break
                position = Position(position.segment + 1, 0, position.sequence)
                continue
            with segment.path.open("rb") as file:
                file.seek(position.offset)
                while len(records) < max_records and size < max_bytes:
                    if file.tell() >= segment.size:
                        break
                    record = _read_record(file)
                    if record is None:
                        raise OSError(f"journal segment {segment.path.name} changed under us")
                    records.append(record)
                    size += len(record.payload)
                    position = Position(position.segment, file.tell(), record.sequence)
        return records, position

    def acknowledge(self, position: Position) -> None:
        """The bus has every record up to `position`: move the head, drop what it passed."""
        self._acknowledged = position.sequence
        self._head = position
        removed = self._forget_acknowledged()
        if position.segment < removed:
            self._head = Position(0, 0, position.sequence)
        else:
            self._head = Position(position.segment - removed, position.offset, position.sequence)
        tmp = self.directory / f"{CURSOR}.tmp"
        tmp.write_text(str(self._acknowledged))
        tmp.replace(self.directory / CURSOR)
        self._peek_oldest()
        self._count()

    def _forget_acknowledged(self) -> int:
        removed = 0
        while self._segments and self._segments[0].last <= self._acknowledged:
            segment = self._segments[0]
            if len(self._segments) == 1 and segment.last < segment.first:
                break  # the open, empty segment new records go to
            if len(self._segments) == 1:
                self._close_writer()
            segment.path.unlink(missing_ok=True)
            self._segments.pop(0)
            removed += 1
        return removed

    def _peek_oldest(self) -> None:
        records, _ = self.read(1, 1)
        self.oldest_at = records[0].written_at if records else None

    # What it holds: counted by the thread that changes it, read from any other.

    def _count(self) -> None:
        pending = self._segments[-1].last - self._acknowledged if self._segments else 0
        # One assignment of a new tuple: a reader in another thread sees the old or the new.
        self._counts = (max(0, pending), sum(segment.size for segment in self._segments))

    @property
    def pending(self) -> int:
        """Records written and not yet acknowledged."""
        return self._counts[0]

    @property
    def size(self) -> int:
        """Bytes the segments take on disk (acknowledged records of a segment still count)."""
        return self._counts[1]

    def close(self) -> None:
        self._close_writer()
        if self._lock is not None:
            os.close(self._lock)  # also releases the lock
            self._lock = None
