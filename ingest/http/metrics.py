"""Prometheus metrics of the ingest process, in a registry of its own per app.

Adapters report S3 and Kafka calls through plain callbacks (`observe_s3`,
`observe_kafka`), so they never import prometheus themselves.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_SIZE_BUCKETS = (1e6, 1e7, 1e8, 5e8, 1e9, 5e9, 1e10, 1e11)
_DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600)
_CALL_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class IngestMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.uploads = Counter(
            "ingest_uploads_total", "Uploads by outcome", ["outcome"], registry=self.registry
        )
        self.upload_bytes = Counter(
            "ingest_upload_bytes_total", "Bytes of completed uploads", registry=self.registry
        )
        self.upload_size = Histogram(
            "ingest_upload_size_bytes",
            "Size of completed uploads",
            buckets=_SIZE_BUCKETS,
            registry=self.registry,
        )
        self.upload_duration = Histogram(
            "ingest_upload_duration_seconds",
            "Time from first to last byte of an upload",
            ["outcome"],
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.uploads_in_flight = Gauge(
            "ingest_uploads_in_flight", "Uploads streaming now", registry=self.registry
        )
        self.buffer_bytes = Gauge(
            "ingest_buffer_bytes",
            "Bytes of upload data held in memory (the budget in use)",
            registry=self.registry,
        )
        self.parts_in_flight = Gauge(
            "ingest_parts_in_flight",
            "Parts held in memory: being read, hashed or sent to S3",
            registry=self.registry,
        )
        self.buffer_waiters = Gauge(
            "ingest_buffer_waiters", "Uploads waiting for memory budget", registry=self.registry
        )
        self.s3_seconds = Histogram(
            "ingest_s3_request_seconds",
            "S3 call latency",
            ["operation"],
            buckets=_CALL_BUCKETS,
            registry=self.registry,
        )
        self.s3_errors = Counter(
            "ingest_s3_errors_total", "Failed S3 calls", ["operation"], registry=self.registry
        )
        self.kafka_seconds = Histogram(
            "ingest_kafka_send_seconds",
            "Time for the broker to take an event",
            ["operation"],
            buckets=_CALL_BUCKETS,
            registry=self.registry,
        )
        self.kafka_errors = Counter(
            "ingest_kafka_errors_total",
            "Events the broker did not take",
            ["operation"],
            registry=self.registry,
        )

        self.journal_events = Gauge(
            "ingest_journal_events",
            "Lifecycle events in the event journal, not yet taken by the broker",
            registry=self.registry,
        )
        self.journal_bytes = Gauge(
            "ingest_journal_bytes", "Bytes of the event journal on disk", registry=self.registry
        )
        self.journal_oldest = Gauge(
            "ingest_journal_oldest_seconds",
            "Age of the oldest event in the journal (0 when it is empty)",
            registry=self.registry,
        )
        self.broker_up = Gauge(
            "ingest_event_bus_up",
            "1 while the broker takes events, as the journal last saw it",
            registry=self.registry,
        )
        self.journal_flow = Counter(
            "ingest_journal_outcomes_total",
            "Events journaled, relayed from the journal, or (progress) dropped",
            ["outcome"],
            registry=self.registry,
        )

    def observe_journal(self, outcome: str, count: int) -> None:
        self.journal_flow.labels(outcome).inc(count)

    def observe_s3(self, operation: str, seconds: float, ok: bool) -> None:
        self.s3_seconds.labels(operation).observe(seconds)
        if not ok:
            self.s3_errors.labels(operation).inc()

    def observe_kafka(self, operation: str, seconds: float, ok: bool) -> None:
        self.kafka_seconds.labels(operation).observe(seconds)
        if not ok:
            self.kafka_errors.labels(operation).inc()
