"""Prometheus metrics of one live-service replica, in a registry of its own.

How it fails: it does not; names are fixed and labels bounded (close reasons,
replay outcomes).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class FanoutMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.connections = Gauge(
            "fanout_connections", "WebSocket clients connected now", registry=self.registry
        )
        self.records = Counter(
            "fanout_records_total", "Records read from the four topics", registry=self.registry
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
