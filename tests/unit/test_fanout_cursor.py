"""Cursors: what they encode comes back, and nothing else decodes."""

from __future__ import annotations

import pytest

from consumers.fanout import cursor
from infra.feeds import TopicPartition
from tests.unit.fanout_fakes import TOPICS


def test_positions_come_back_and_missing_partitions_count_as_zero() -> None:
    positions = {
        TopicPartition("t.uploads", 0): 5,
        TopicPartition("t.uploads", 2): 2**40,
        TopicPartition("t.quota", 11): 127,
        TopicPartition("elsewhere", 0): 9,  # not a live topic: left out
    }
    text = cursor.encode(positions, TOPICS)
    assert text.isascii()
    assert "=" not in text
    assert "+" not in text
    assert "/" not in text
    decoded = cursor.decode(text, TOPICS)
    assert decoded[TopicPartition("t.uploads", 1)] == 0
    assert {tp: o for tp, o in decoded.items() if o} == {
        tp: o for tp, o in positions.items() if tp.topic != "elsewhere"
    }


def test_a_cursor_of_four_topics_of_twelve_partitions_is_short() -> None:
    positions = {TopicPartition(t, p): 3_000_000 + 1_000 * p for t in TOPICS for p in range(12)}
    assert len(cursor.encode(positions, TOPICS)) < 160


@pytest.mark.parametrize(
    "text",
    ["", "!!!", "AA", "Ag", "AQ", cursor.encode({}, TOPICS) + "AA", "A" * 20_000, "AQz_____"],
)
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(cursor.InvalidCursor):
        cursor.decode(text, TOPICS)


def test_offsets_are_never_negative() -> None:
    with pytest.raises(ValueError, match="negative"):
        cursor.encode({TopicPartition("t.uploads", 0): -1}, TOPICS)
