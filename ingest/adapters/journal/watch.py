"""Whether the event bus takes events, as the journal last saw it, told to the log sparingly.

An outage must not flood the log: one line when the bus stops taking events,
one when it takes them again, and while it stays down (or the journal still
holds events) a summary at most every `summary_seconds`, never a line per
event. Never fails.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class BusWatch:
    def __init__(
        self, *, summary_seconds: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.up = True
        self._summary_seconds = summary_seconds
        self._clock = clock
        self._down_since = 0.0
        self._last_summary = 0.0
        self.progress_dropped = 0
        """Progress events dropped since the process started (the bus could not take them)."""
        self._dropped_at_summary = 0

    def failed(self, error: BaseException) -> None:
        """The bus did not take an event (or a probe)."""
        if not self.up:
            return
        self.up = False
        now = self._clock()
        self._down_since = self._last_summary = now
        log.warning(
            "the event bus stopped taking events (%s): lifecycle events go to the journal "
            "and are sent when it is back; progress events are dropped meanwhile",
            error,
        )

    def answered(self, pending: int) -> None:
        """The bus took an event again."""
        if self.up:
            return
        self.up = True
        log.warning(
            "the event bus takes events again after %.1f s; %d journaled events to send, "
            "%d progress events were dropped",
            self._clock() - self._down_since,
            pending,
            self.progress_dropped - self._dropped_at_summary,
        )
        self._dropped_at_summary = self.progress_dropped

    def dropped(self) -> None:
        self.progress_dropped += 1

    def summarize(self, pending: int, size: int, oldest: float | None) -> None:
        """A summary line, when one is due and there is something to say."""
        now = self._clock()
        if now - self._last_summary < self._summary_seconds:
            return
        if self.up and not pending:
            self._last_summary = now
            return
        self._last_summary = now
        dropped = self.progress_dropped - self._dropped_at_summary
        self._dropped_at_summary = self.progress_dropped
        state = f"down for {now - self._down_since:.0f} s" if not self.up else "back, draining"
        log.warning(
            "event bus %s: %d events (%d bytes) journaled, the oldest %.0f s old; "
            "%d progress events dropped since the last summary",
            state,
            pending,
            size,
            oldest or 0.0,
            dropped,
        )
