"""Summaries of repeated measurements: median with min and max, and percentiles.

Every figure a benchmark reports is the median of several runs, shown with the
smallest and largest run, because the machine is shared and single runs are
noisy. Pure functions; an empty sample raises ValueError.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Spread:
    median: float
    min: float
    max: float
    n: int

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    def scaled(self, factor: float) -> Spread:
        return Spread(self.median * factor, self.min * factor, self.max * factor, self.n)

    def show(self, fmt: str = ".1f") -> str:
        """`median (min-max)`, or only the median for a single run."""
        if self.n == 1:
            return format(self.median, fmt)
        return f"{self.median:{fmt}} ({self.min:{fmt}}-{self.max:{fmt}})"


def spread(values: Sequence[float]) -> Spread:
    if not values:
        raise ValueError("no values to summarize")
    return Spread(statistics.median(values), min(values), max(values), len(values))


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linearly interpolated between closest ranks."""
    if not values:
        raise ValueError("no values for a percentile")
    if not 0 <= q <= 100:
        raise ValueError("a percentile is between 0 and 100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
