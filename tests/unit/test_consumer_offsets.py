"""The commit point of one partition: the contiguous prefix of finished records, gaps allowed."""

from __future__ import annotations

import pytest

from consumers.runtime.offsets import OffsetTracker


def test_out_of_order_completion_commits_only_the_contiguous_prefix() -> None:
    tracker = OffsetTracker()
    for offset in (0, 1, 2, 3):
        tracker.returned(offset)
    tracker.finished(2)
    tracker.finished(1)
    assert tracker.to_commit() is None
    tracker.finished(0)
    assert tracker.to_commit() == 3
    tracker.mark_committed(3)
    assert tracker.to_commit() is None
    tracker.finished(3)
    assert tracker.to_commit() == 4


def test_gaps_in_offsets_are_not_waited_for_and_not_assumed() -> None:
    # 11 and 12 were never returned (a transaction marker, a compacted record).
    tracker = OffsetTracker(committed=10)
    for offset in (10, 13, 15):
        tracker.returned(offset)
    tracker.finished(13)
    assert tracker.to_commit() is None
    tracker.finished(10)
    assert tracker.to_commit() == 14
    tracker.finished(15)
    assert tracker.to_commit() == 16
    assert tracker.outstanding == 0


def test_misuse_is_refused() -> None:
    tracker = OffsetTracker()
    tracker.returned(5)
    with pytest.raises(ValueError, match="returned after"):
        tracker.returned(5)
    with pytest.raises(ValueError, match="not awaiting"):
        tracker.finished(4)
    tracker.finished(5)
    with pytest.raises(ValueError, match="not awaiting"):
        tracker.finished(5)
