"""The settings of one `ingest consume` process, built once from the environment.

How it fails: a malformed variable raises SettingsError naming it, at start.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

import msgspec

from infra.env import GiB, duration, integer, size

DEFAULT_METRICS_PORT = 9464


class ConsumerSettings(msgspec.Struct, frozen=True, kw_only=True):
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    topic_prefix: str = "ingest."
    # Loopback unless told otherwise (CONSUMER_METRICS_HOST=0.0.0.0 in a container).
    metrics_host: str = "127.0.0.1"
    metrics_port: int = DEFAULT_METRICS_PORT
    drain_seconds: float = 10.0
    commit_interval_seconds: float = 2.0
    instance_id: str = "consumer"
    # The quota consumer's defaults: the same variables, and so the same values, as ingest's.
    quota_bytes: int = 10 * GiB
    quota_uploads: int = 100
    quota_period_days: int = 30


def consumer_settings_from_env(environ: Mapping[str, str] | None = None) -> ConsumerSettings:
    env = os.environ if environ is None else environ
    defaults = ConsumerSettings()
    return ConsumerSettings(
        kafka_bootstrap_servers=env.get(
            "KAFKA_BOOTSTRAP_SERVERS", defaults.kafka_bootstrap_servers
        ),
        topic_prefix=env.get("INGEST_TOPIC_PREFIX", defaults.topic_prefix),
        metrics_host=env.get("CONSUMER_METRICS_HOST", defaults.metrics_host),
        metrics_port=integer(
            env.get("CONSUMER_METRICS_PORT", str(defaults.metrics_port)), "CONSUMER_METRICS_PORT"
        ),
        drain_seconds=duration(
            env.get("INGEST_SHUTDOWN_GRACE", str(defaults.drain_seconds)), "INGEST_SHUTDOWN_GRACE"
        ),
        commit_interval_seconds=duration(
            env.get("CONSUMER_COMMIT_INTERVAL", str(defaults.commit_interval_seconds)),
            "CONSUMER_COMMIT_INTERVAL",
        ),
        instance_id=env.get("INGEST_INSTANCE_ID", socket.gethostname()),
        quota_bytes=size(
            env.get("INGEST_QUOTA_BYTES", str(defaults.quota_bytes)), "INGEST_QUOTA_BYTES"
        ),
        quota_uploads=integer(
            env.get("INGEST_QUOTA_UPLOADS", str(defaults.quota_uploads)), "INGEST_QUOTA_UPLOADS"
        ),
        quota_period_days=integer(
            env.get("INGEST_QUOTA_PERIOD_DAYS", str(defaults.quota_period_days)),
            "INGEST_QUOTA_PERIOD_DAYS",
        ),
    )
