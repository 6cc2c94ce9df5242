"""Settings of the ingest process, read once from the environment at the composition root.

Everything else receives the values it needs as arguments. A malformed
variable fails start-up with a SettingsError naming it, never later; that
includes a JWT key the verifier would refuse (see `check_jwt_keys`).
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Mapping
from pathlib import Path

import msgspec

from infra.cors import CorsPolicy, cors_policy
from infra.env import (
    GiB,
    MiB,
    SettingsError,
    TiB,
    duration,
    integer,
    size,
    word_list,
)
from infra.s3 import S3Endpoint
from ingest.auth import KeyConfigurationError, TokenVerifier


class IngestSettings(msgspec.Struct, frozen=True, kw_only=True):
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    topic_prefix: str = "ingest."
    s3_endpoint_url: str | None = "http://127.0.0.1:9000"
    s3_bucket: str = "ingest"
    # None: botocore's own credential chain (instance role, web identity, profile...).
    aws_access_key_id: str | None = "minioadmin"
    aws_secret_access_key: str | None = "minioadmin"
    aws_region: str = "us-east-1"
    jwt_secret: str | None = None
    jwt_public_key: str | None = None
    max_file_size: int = 500 * MiB
    min_file_size: int = 1024
    allowed_formats: tuple[str, ...] = ("mp4", "mov", "avi", "mkv", "webm")
    part_size: int = 8 * MiB
    session_ttl_seconds: float = 3600.0
    data_dir: Path = Path(".ingest-data")
    quota_bytes: int = 10 * GiB
    quota_uploads: int = 100
    quota_period_days: int = 30
    host: str = "127.0.0.1"
    port: int = 8080
    parts_in_flight: int = 4
    memory_budget: int = 256 * MiB
    progress_interval_seconds: float = 0.5
    cancel_poll_seconds: float = 0.5
    shutdown_grace_seconds: float = 30.0
    event_timeout_seconds: float = 10.0
    body_idle_timeout_seconds: float = 60.0
    header_timeout_seconds: float = 10.0
    keepalive_timeout_seconds: float = 15.0
    # Above the 1,000 concurrent uploads the benchmark holds, below a default fd limit of 1 Mi.
    max_connections: int = 4096
    cors: CorsPolicy = CorsPolicy()
    # Unique per process start: a restarted container keeps its hostname and often its pid,
    # and must not be taken for the process before it (cancels are addressed by this id).
    instance_id: str = msgspec.field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
    )

    def s3_endpoint(self) -> S3Endpoint:
        return S3Endpoint(
            endpoint_url=self.s3_endpoint_url,
            region=self.aws_region,
            access_key_id=self.aws_access_key_id,
            secret_access_key=self.aws_secret_access_key,
        )


def ingest_settings_from_env(environ: Mapping[str, str] | None = None) -> IngestSettings:
    env = os.environ if environ is None else environ
    defaults = IngestSettings()

    def text(name: str, default: str) -> str:
        return env.get(name) or default

    # The local stack's credentials are only assumed for its own endpoint; against AWS
    # (S3_ENDPOINT_URL empty) no keys means the standard credential chain.
    on_default_endpoint = (
        env.get("S3_ENDPOINT_URL", defaults.s3_endpoint_url) == defaults.s3_endpoint_url
    )
    local_credential = "minioadmin" if on_default_endpoint else None
    settings = IngestSettings(
        kafka_bootstrap_servers=text("KAFKA_BOOTSTRAP_SERVERS", defaults.kafka_bootstrap_servers),
        topic_prefix=env.get("INGEST_TOPIC_PREFIX", defaults.topic_prefix),
        s3_endpoint_url=env.get("S3_ENDPOINT_URL", defaults.s3_endpoint_url) or None,
        s3_bucket=text("S3_BUCKET", defaults.s3_bucket),
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID") or local_credential,
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or local_credential,
        aws_region=text("AWS_REGION", defaults.aws_region),
        jwt_secret=env.get("INGEST_JWT_SECRET") or None,
        jwt_public_key=env.get("INGEST_JWT_PUBLIC_KEY") or None,
        max_file_size=size(
            text("INGEST_MAX_FILE_SIZE", str(defaults.max_file_size)), "INGEST_MAX_FILE_SIZE"
        ),
        min_file_size=size(
            text("INGEST_MIN_FILE_SIZE", str(defaults.min_file_size)), "INGEST_MIN_FILE_SIZE"
        ),
        allowed_formats=word_list(
            text("INGEST_ALLOWED_FORMATS", ",".join(defaults.allowed_formats)),
            "INGEST_ALLOWED_FORMATS",
        ),
        part_size=size(text("INGEST_PART_SIZE", str(defaults.part_size)), "INGEST_PART_SIZE"),
        session_ttl_seconds=duration(
            text("INGEST_SESSION_TTL", str(defaults.session_ttl_seconds)), "INGEST_SESSION_TTL"
        ),
        data_dir=Path(text("INGEST_DATA_DIR", str(defaults.data_dir))),
        quota_bytes=size(
            text("INGEST_QUOTA_BYTES", str(defaults.quota_bytes)), "INGEST_QUOTA_BYTES"
        ),
        quota_uploads=integer(
            text("INGEST_QUOTA_UPLOADS", str(defaults.quota_uploads)), "INGEST_QUOTA_UPLOADS"
        ),
        quota_period_days=integer(
            text("INGEST_QUOTA_PERIOD_DAYS", str(defaults.quota_period_days)),
            "INGEST_QUOTA_PERIOD_DAYS",
        ),
        host=text("INGEST_HOST", defaults.host),
        port=integer(text("INGEST_PORT", str(defaults.port)), "INGEST_PORT"),
        parts_in_flight=integer(
            text("INGEST_PARTS_IN_FLIGHT", str(defaults.parts_in_flight)), "INGEST_PARTS_IN_FLIGHT"
        ),
        memory_budget=size(
            text("INGEST_MEMORY_BUDGET", str(defaults.memory_budget)), "INGEST_MEMORY_BUDGET"
        ),
        progress_interval_seconds=duration(
            text("INGEST_PROGRESS_INTERVAL", str(defaults.progress_interval_seconds)),
            "INGEST_PROGRESS_INTERVAL",
        ),
        cancel_poll_seconds=duration(
            text("INGEST_CANCEL_POLL", str(defaults.cancel_poll_seconds)), "INGEST_CANCEL_POLL"
        ),
        shutdown_grace_seconds=duration(
            text("INGEST_SHUTDOWN_GRACE", str(defaults.shutdown_grace_seconds)),
            "INGEST_SHUTDOWN_GRACE",
        ),
        body_idle_timeout_seconds=duration(
            text("INGEST_BODY_IDLE_TIMEOUT", str(defaults.body_idle_timeout_seconds)),
            "INGEST_BODY_IDLE_TIMEOUT",
        ),
        header_timeout_seconds=duration(
            text("INGEST_HEADER_TIMEOUT", str(defaults.header_timeout_seconds)),
            "INGEST_HEADER_TIMEOUT",
        ),
        keepalive_timeout_seconds=duration(
            text("INGEST_KEEPALIVE_TIMEOUT", str(defaults.keepalive_timeout_seconds)),
            "INGEST_KEEPALIVE_TIMEOUT",
        ),
        max_connections=integer(
            text("INGEST_MAX_CONNECTIONS", str(defaults.max_connections)), "INGEST_MAX_CONNECTIONS"
        ),
        cors=cors_policy(env.get("INGEST_CORS_ORIGINS", "")),
        event_timeout_seconds=duration(
            text("INGEST_EVENT_TIMEOUT", str(defaults.event_timeout_seconds)),
            "INGEST_EVENT_TIMEOUT",
        ),
    )
    _validate(settings)
    return settings


def _validate(settings: IngestSettings) -> None:
    if not 0 < settings.max_file_size <= 5 * TiB:
        raise SettingsError("INGEST_MAX_FILE_SIZE must be between 1 byte and 5 TiB")
    if not 5 * MiB <= settings.part_size <= 5 * GiB:
        raise SettingsError("INGEST_PART_SIZE must be between 5 MiB and 5 GiB (S3's part limits)")
    if settings.parts_in_flight < 1:
        raise SettingsError("INGEST_PARTS_IN_FLIGHT must be at least 1")
    if settings.memory_budget < settings.part_size:
        raise SettingsError("INGEST_MEMORY_BUDGET must hold at least one part (INGEST_PART_SIZE)")
    if settings.max_connections < 1:
        raise SettingsError("INGEST_MAX_CONNECTIONS must be at least 1")
    if settings.header_timeout_seconds <= 0 or settings.keepalive_timeout_seconds <= 0:
        raise SettingsError("INGEST_HEADER_TIMEOUT and INGEST_KEEPALIVE_TIMEOUT must be positive")
    if settings.min_file_size > settings.max_file_size:
        raise SettingsError("INGEST_MIN_FILE_SIZE is larger than INGEST_MAX_FILE_SIZE")
    check_jwt_keys(settings)


def check_jwt_keys(settings: IngestSettings) -> None:
    """SettingsError naming the variable when the configured JWT key would be refused.

    Having no key at all is left to the caller: `ingest serve` requires one,
    `ingest dev` makes its own.
    """
    if not (settings.jwt_secret or settings.jwt_public_key):
        return
    try:
        # The verifier itself judges the key, so start-up and serving cannot disagree.
        TokenVerifier(secret=settings.jwt_secret, public_key=settings.jwt_public_key)
    except KeyConfigurationError as error:
        names = [
            name
            for name, value in (
                ("INGEST_JWT_SECRET", settings.jwt_secret),
                ("INGEST_JWT_PUBLIC_KEY", settings.jwt_public_key),
            )
            if value
        ]
        raise SettingsError(f"{' and '.join(names)}: {error}") from None
