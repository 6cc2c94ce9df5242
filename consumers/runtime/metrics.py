"""Prometheus metrics of one consumer, in a registry of its own.

Records handled by outcome, handling time, retries, dead letters, records in
flight, and lag per partition (end offset minus committed offset, refreshed
by the runtime; a partition's series is removed when it is revoked, so a
member never reports lag for what another member now reads).

How it fails: it does not; the names are fixed and the labels bounded by the
partitions a member owns.
"""

from __future__ import annotations

import contextlib
from typing import Final, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from infra.feeds import TopicPartition

Outcome = Literal["handled", "skipped", "dead_lettered"]

_HANDLING_BUCKETS: Final = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120, 600)


class ConsumerMetrics:
    def __init__(self, consumer: str) -> None:
        self.consumer = consumer
        self.registry = CollectorRegistry(auto_describe=True)
        self.records = Counter(
            "consumer_records_total",
            "Records finished, by outcome (handled, skipped, dead_lettered)",
            ["consumer", "outcome"],
            registry=self.registry,
        )
        self.handling = Histogram(
            "consumer_handling_seconds",
            "Time from a record's first try to its outcome, retries included",
            ["consumer"],
            buckets=_HANDLING_BUCKETS,
            registry=self.registry,
        )
        self.retries = Counter(
            "consumer_retries_total",
            "Tries of a record again after a retriable error",
            ["consumer"],
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "consumer_dead_letters_total",
            "Records written to the dead-letter topic",
            ["consumer"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "consumer_records_in_flight",
            "Records being handled now",
            ["consumer"],
            registry=self.registry,
        )
        self.lag = Gauge(
            "consumer_lag",
            "Records of a partition not committed yet: end offset minus committed offset",
            ["consumer", "topic", "partition"],
            registry=self.registry,
        )

    def finished(self, outcome: Outcome, seconds: float) -> None:
        self.records.labels(self.consumer, outcome).inc()
        self.handling.labels(self.consumer).observe(seconds)
        if outcome == "dead_lettered":
            self.dead_letters.labels(self.consumer).inc()

    def retried(self) -> None:
        self.retries.labels(self.consumer).inc()

    def set_lag(self, partition: TopicPartition, lag: int) -> None:
        self.lag.labels(self.consumer, partition.topic, str(partition.partition)).set(lag)

    def forget(self, partition: TopicPartition) -> None:
        with contextlib.suppress(KeyError):  # never measured
            self.lag.remove(self.consumer, partition.topic, str(partition.partition))
