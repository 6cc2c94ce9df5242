"""The Kafka client's log lines, held back while a broker is away: one of a kind per window.

aiokafka logs every failed reconnection (every 100 ms per client while a
broker is down), and the sink logs every record a dead broker never took.
`RepeatedLines`, a filter on the process's log handlers, lets the first line
of each kind (logger, level and message template) through, holds back the
same kind for `window` seconds, and appends to the next one let through how
many were held back. Lines of other loggers pass untouched. Never fails.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

KAFKA_LOGGERS = ("aiokafka", "infra.kafka")


class RepeatedLines(logging.Filter):
    def __init__(
        self,
        prefixes: tuple[str, ...] = KAFKA_LOGGERS,
        *,
        window: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._prefixes = prefixes
        self._window = window
        self._clock = clock
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self._prefixes):
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = self._clock()
        last, held = self._seen.get(key, (None, 0))
        if last is not None and now - last < self._window:
            self._seen[key] = (last, held + 1)
            return False
        self._seen[key] = (now, 0)
        if held and last is not None:
            record.msg = f"{record.msg} [{held} more like this in the last {now - last:.0f} s]"
        return True


def limit_repeated_lines(window: float = 30.0) -> None:
    """Install `RepeatedLines` on every handler of the root logger (after logging is set up)."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(RepeatedLines(window=window))
