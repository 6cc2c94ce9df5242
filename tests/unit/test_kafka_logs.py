"""The Kafka client's repeated log lines are held back, and the next one says how many."""

from __future__ import annotations

import logging

from infra.kafka.logs import RepeatedLines


def line(name: str, msg: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_one_line_of_a_kind_per_window_then_a_count_of_those_held_back() -> None:
    now = [0.0]
    limiter = RepeatedLines(window=30.0, clock=lambda: now[0])
    template = "Unable connect to node with id %s: %s"
    passed = []
    for n in range(300):  # a broker away for 30 s, a retry every 100 ms
        now[0] = n * 0.1
        record = line("aiokafka", template, 1, "refused")
        if limiter.filter(record):
            passed.append(record)
    now[0] = 31.0
    last = line("aiokafka", template, 1, "refused")
    assert limiter.filter(last)
    assert len(passed) == 1
    assert "299 more like this" in last.getMessage()
    assert last.getMessage().startswith("Unable connect to node with id 1: refused")


def test_other_kinds_and_other_loggers_pass() -> None:
    limiter = RepeatedLines(window=30.0, clock=lambda: 0.0)
    assert limiter.filter(line("aiokafka", "one thing"))
    assert limiter.filter(line("aiokafka", "another thing"))
    assert limiter.filter(line("infra.kafka.sink", "one thing"))
    for _ in range(5):
        assert limiter.filter(line("ingest.http.errors", "request failed"))
    assert not limiter.filter(line("aiokafka", "one thing"))
