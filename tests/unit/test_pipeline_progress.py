"""Progress bookkeeping: percentage, throttling, speed over a moving window, ETA."""

from __future__ import annotations

import pytest

from ingest.pipeline.progress import ProgressTracker


def test_percentage_and_eta_need_a_known_size() -> None:
    unknown = ProgressTracker(None, interval=0.5, now=0.0)
    unknown.add(500, 1.0)
    snap = unknown.snapshot(1.0)
    assert (snap.percentage, snap.eta_seconds, snap.total_bytes) == (None, None, None)
    assert snap.bytes_received == 500

    known = ProgressTracker(2_000, interval=0.5, now=0.0)
    known.add(500, 1.0)
    snap = known.snapshot(1.0)
    assert snap.percentage == 25.0
    assert snap.speed_bps == pytest.approx(500.0)
    assert snap.eta_seconds == pytest.approx(3.0)


def test_percentage_is_capped_and_handles_an_empty_file() -> None:
    over = ProgressTracker(100, interval=0.5, now=0.0)
    over.add(150, 1.0)
    assert over.snapshot(1.0).percentage == 100.0
    assert over.snapshot(1.0).eta_seconds == 0.0
    assert ProgressTracker(0, interval=0.5, now=0.0).snapshot(0.0).percentage == 100.0


def test_due_at_most_once_per_interval() -> None:
    tracker = ProgressTracker(None, interval=0.5, now=0.0)
    answers = [(t, tracker.due(t)) for t in (0.1, 0.49, 0.5, 0.6, 0.99, 1.0, 1.2, 2.0)]
    assert [t for t, due in answers if due] == [0.5, 1.0, 2.0]


def test_a_forced_report_restarts_the_interval() -> None:
    tracker = ProgressTracker(None, interval=0.5, now=0.0)
    tracker.add(10, 1.0)
    assert tracker.report(1.0).bytes_received == 10
    assert not tracker.due(1.25)
    assert tracker.due(1.5)


def test_speed_covers_only_the_recent_window() -> None:
    tracker = ProgressTracker(None, interval=0.5, now=0.0, window=5.0)
    step = 0.1
    for i in range(1, 201):  # 20 s at 100 B/s
        tracker.add(10, i * step)
    assert tracker.speed(20.0) == pytest.approx(100.0, rel=0.05)
    for i in range(201, 301):  # then 10 s at 1,000 B/s
        tracker.add(100, i * step)
    assert tracker.speed(30.0) == pytest.approx(1_000.0, rel=0.05)


def test_speed_decays_when_the_client_stalls() -> None:
    tracker = ProgressTracker(None, interval=0.5, now=0.0, window=5.0)
    for i in range(1, 101):
        tracker.add(100, i * 0.1)
    busy = tracker.speed(10.0)
    assert busy == pytest.approx(1_000.0, rel=0.05)
    assert tracker.speed(30.0) < busy / 20


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="interval"):
        ProgressTracker(None, interval=-1, now=0.0)
    with pytest.raises(ValueError, match="window"):
        ProgressTracker(None, interval=1, now=0.0, window=0)
