"""How far one upload has got: bytes, percentage, speed over a moving window, ETA.

Pure bookkeeping on a caller-supplied clock (monotonic seconds): it never
awaits and never raises once built. `due` throttles the periodic reports; the
caller reports outside the throttle with `report` (on every stored part).
A resumed upload counts from the bytes it already had (`already`): its
snapshots speak of the whole file, its speed of what arrives now.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class ProgressSnapshot:
    bytes_received: int
    total_bytes: int | None
    percentage: float | None
    speed_bps: float
    eta_seconds: float | None


class ProgressTracker:
    def __init__(
        self,
        total_bytes: int | None,
        *,
        interval: float,
        now: float,
        window: float = 5.0,
        already: int = 0,
    ) -> None:
        if interval < 0 or window <= 0:
            raise ValueError("interval must be >= 0 and window > 0")
        self._total = total_bytes
        self._already = already
        self._interval = interval
        self._window = window
        # Sampling at most this often keeps the window a few dozen entries
        # long however small the chunks are.
        self._resolution = window / 32
        self._received = 0
        self._samples: deque[tuple[float, int]] = deque([(now, 0)])
        self._last_report = now

    @property
    def bytes_received(self) -> int:
        """Bytes added since the tracker started (not counting `already`)."""
        return self._received

    def add(self, size: int, now: float) -> None:
        self._received += size
        if now - self._samples[-1][0] >= self._resolution:
            self._samples.append((now, self._received))
        # Keep one sample at or before the window's start as the anchor.
        while len(self._samples) > 1 and self._samples[1][0] <= now - self._window:
            self._samples.popleft()

    def due(self, now: float) -> bool:
        """True when `interval` has passed since the last report; it then counts as reported."""
        if now - self._last_report < self._interval:
            return False
        self._last_report = now
        return True

    def report(self, now: float) -> ProgressSnapshot:
        """A snapshot for a report made regardless of `due`; restarts the interval."""
        self._last_report = now
        return self.snapshot(now)

    def snapshot(self, now: float) -> ProgressSnapshot:
        speed = self.speed(now)
        return ProgressSnapshot(
            bytes_received=self._already + self._received,
            total_bytes=self._total,
            percentage=self._percentage(),
            speed_bps=speed,
            eta_seconds=self._eta(speed),
        )

    def speed(self, now: float) -> float:
        """Bytes per second over the last `window` seconds (or since the start)."""
        anchor_time, anchor_bytes = self._samples[0]
        for sample_time, sample_bytes in self._samples:
            if sample_time > now - self._window:
                break
            anchor_time, anchor_bytes = sample_time, sample_bytes
        elapsed = now - anchor_time
        if elapsed <= 0:
            return 0.0
        return max(0.0, (self._received - anchor_bytes) / elapsed)

    def _percentage(self) -> float | None:
        if self._total is None:
            return None
        if self._total == 0:
            return 100.0
        return min(100.0, (self._already + self._received) * 100.0 / self._total)

    def _eta(self, speed: float) -> float | None:
        if self._total is None:
            return None
        remaining = self._total - self._already - self._received
        if remaining <= 0:
            return 0.0
        if speed <= 0:
            return None
        return remaining / speed
