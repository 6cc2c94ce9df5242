"""Cursors: where the feed stood, per partition of the four topics, as a short URL-safe string.

A cursor maps each partition of the live topics (uploads, progress,
detections, quota, in that order) to the offset of the next record not yet
accounted for: everything before it was either sent to the client or was
not for it. It is encoded as a version byte, then per topic the partition
count, the smallest offset, and each partition's distance from it, all as
unsigned LEB128 varints, in base64url without padding. Partitions of a topic
grow alike, so the distances stay small: twelve partitions of four topics
with offsets in the millions take about 150 characters. Topics are named by their
place in the list, so a cursor works on any replica with the same topic
prefix; a partition a cursor does not name counts as offset 0.

How it fails: `decode` raises InvalidCursor for anything it did not produce
(bad base64, unknown version, truncated or trailing bytes, absurd counts).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Final

from infra.feeds import TopicPartition

VERSION: Final = 1
MAX_PARTITIONS: Final = 10_000
MAX_LENGTH: Final = 16_384

Positions = Mapping[TopicPartition, int]


class InvalidCursor(ValueError):
    """The text is not a cursor this service wrote."""


def encode(positions: Positions, topics: Sequence[str]) -> str:
    """The cursor of `positions` over `topics` (partitions of other topics are left out)."""
    counts = {topic: 0 for topic in topics}
    for tp in positions:
        if tp.topic in counts:
            counts[tp.topic] = max(counts[tp.topic], tp.partition + 1)
    out = bytearray([VERSION])
    for topic in topics:
        offsets = [positions.get(TopicPartition(topic, p), 0) for p in range(counts[topic])]
        base = min(offsets, default=0)
        _varint(out, counts[topic])
        if offsets:
            _varint(out, base)
        for offset in offsets:
            _varint(out, offset - base)
    return base64.urlsafe_b64encode(out).rstrip(b"=").decode("ascii")


def decode(text: str, topics: Sequence[str]) -> dict[TopicPartition, int]:
    if not text or len(text) > MAX_LENGTH:
        raise InvalidCursor("a cursor is a non-empty string of at most 16 KiB")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise InvalidCursor("the cursor is not base64url") from None
    if not raw or raw[0] != VERSION:
        raise InvalidCursor("the cursor has an unknown version")
    reader = _Reader(raw, 1)
    positions: dict[TopicPartition, int] = {}
    for topic in topics:
        count = reader.varint()
        if count > MAX_PARTITIONS:
            raise InvalidCursor("the cursor names too many partitions")
        base = reader.varint() if count else 0
        for partition in range(count):
            positions[TopicPartition(topic, partition)] = base + reader.varint()
    if reader.at < len(raw):
        raise InvalidCursor("the cursor has trailing bytes")
    return positions


def _varint(out: bytearray, value: int) -> None:
    if value < 0:
        raise ValueError("offsets are never negative")
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return


class _Reader:
    def __init__(self, raw: bytes, at: int) -> None:
        self.raw = raw
        self.at = at

    def varint(self) -> int:
        value = shift = 0
        while True:
            if self.at >= len(self.raw) or shift > 63:
                raise InvalidCursor("the cursor is truncated")
            byte = self.raw[self.at]
            self.at += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
