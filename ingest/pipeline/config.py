"""How the pipeline runs, for every upload of a process: part size, concurrency, pacing, bounds.

One frozen value built at the composition root. It fails only when built with
values that cannot work (ValueError), never later.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class PipelineConfig:
    part_size: int
    """Base part size; raised per upload so it fits in 10,000 parts (`plan_part_size`)."""
    parts_in_flight: int
    """Parts of one upload being hashed or uploaded at once."""
    progress_interval: float
    """Seconds between two throttled progress events."""
    clock: Callable[[], float] = time.monotonic
    """Monotonic seconds, for progress throttling and speed."""
    wall_clock: Callable[[], datetime] = _utc_now
    """Aware datetimes, for event timestamps."""
    event_timeout: float = 10.0
    """Bound on emitting one event and on the duplicate lookup."""
    abort_timeout: float = 30.0
    """Bound on stopping part uploads and on aborting the multipart upload."""
    speed_window: float = 5.0

    def __post_init__(self) -> None:
        if self.part_size <= 0:
            raise ValueError("part_size must be positive")
        if self.parts_in_flight < 1:
            raise ValueError("parts_in_flight must be at least 1")
        if self.progress_interval < 0:
            raise ValueError("progress_interval must be >= 0")
        if self.event_timeout <= 0 or self.abort_timeout <= 0:
            raise ValueError("timeouts must be positive")
