"""Prometheus metrics of one live-service replica, in a registry of its own.

How it fails: it does not; names are fixed and labels bounded (close reasons,
replay outcomes).
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

DELAY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60)


class FanoutMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.connections = Gauge(
            "fanout_connections", "WebSocket clients connected now", registry=self.registry
        )
        self.records = Counter(
            "fanout_records_total", "Records read from the four topics", registry=self.registry
        )
        self.delay = Histogram(
            "fanout_record_delay_seconds",
            "From a record's append time (producer clock) to the hub handing it to clients",
            buckets=DELAY_BUCKETS,
            registry=self.registry,
        )
        self.too_slow = Counter(
            "fanout_too_slow_total",
            "Clients closed because their send queue was full",
            registry=self.registry,
        )
        self.closed = Counter(
            "fanout_closed_total",
            "WebSocket connections closed, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.refused = Counter(
            "fanout_refused_total",
            "Connections refused at a limit, by reason (user_limit, service_full)",
            ["reason"],
            registry=self.registry,
        )
        self.replays = Counter(
            "fanout_replays_total",
            "Reconnections with a cursor, by outcome (replayed, resync)",
            ["outcome"],
            registry=self.registry,
        )
        self.replayed = Counter(
            "fanout_replayed_messages_total",
            "Messages sent from a replay",
            registry=self.registry,
        )
