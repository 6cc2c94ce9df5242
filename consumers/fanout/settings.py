"""Settings of the live service (`ingest consume fanout`), built once from the environment.

How it fails: a malformed variable raises SettingsError naming it, at start;
so does a JWT key the verifier would refuse, or none at all.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import msgspec

from infra.cors import CorsPolicy, cors_policy
from infra.env import SettingsError, duration, integer, size
from infra.s3 import LOCAL_S3, S3Endpoint, s3_endpoint_from_env
from infra.tokens import KeyConfigurationError, TokenVerifier

DEFAULT_PORT = 8081


class FanoutSettings(msgspec.Struct, frozen=True, kw_only=True):
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    topic_prefix: str = "ingest."
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    jwt_secret: str | None = None
    jwt_public_key: str | None = None
    max_connections: int = 1000
    max_connections_per_user: int = 5
    queue_size: int = 256
    """Messages a client may have waiting before it is closed as too slow."""
    heartbeat_seconds: float = 15.0
    """A heartbeat message (with the cursor of now) this often."""
    ping_seconds: float = 20.0
    """A WebSocket ping this often; a client whose pong is not back within half is dropped."""
    close_timeout_seconds: float = 5.0
    lookback_seconds: float = 3600.0
    """At start, read the topics from this far back (the live progress of recent uploads)."""
    keep_finished_seconds: float = 3600.0
    max_tracked_uploads: int = 100_000
    replay_max_events: int = 10_000
    replay_readers: int = 4
    send_buffer_bytes: int = 0
    """SO_SNDBUF of each WebSocket (0: the kernel's default): bounds what a stalled client holds."""
    cors: CorsPolicy = CorsPolicy()
    """Browser origins allowed to call the live progress route (as ingest's, one setting)."""
    s3: S3Endpoint = S3Endpoint(LOCAL_S3, "us-east-1", None, None)
    """Where the detection's result documents are read (`GET /v1/videos/{id}/results`)."""
    s3_bucket: str = "ingest"

    def verifier(self) -> TokenVerifier:
        return TokenVerifier(secret=self.jwt_secret, public_key=self.jwt_public_key)


def fanout_settings_from_env(environ: Mapping[str, str] | None = None) -> FanoutSettings:
    env = os.environ if environ is None else environ
    d = FanoutSettings()

    def text(name: str, default: str) -> str:
        return env.get(name) or default

    settings = FanoutSettings(
        kafka_bootstrap_servers=text("KAFKA_BOOTSTRAP_SERVERS", d.kafka_bootstrap_servers),
        topic_prefix=env.get("INGEST_TOPIC_PREFIX", d.topic_prefix),
        host=text("FANOUT_HOST", d.host),
        port=integer(text("FANOUT_PORT", str(d.port)), "FANOUT_PORT"),
        jwt_secret=env.get("INGEST_JWT_SECRET") or None,
        jwt_public_key=env.get("INGEST_JWT_PUBLIC_KEY") or None,
        max_connections=integer(
            text("FANOUT_MAX_CONNECTIONS", str(d.max_connections)), "FANOUT_MAX_CONNECTIONS"
        ),
        max_connections_per_user=integer(
            text("FANOUT_MAX_CONNECTIONS_PER_USER", str(d.max_connections_per_user)),
            "FANOUT_MAX_CONNECTIONS_PER_USER",
        ),
        queue_size=integer(text("FANOUT_QUEUE_SIZE", str(d.queue_size)), "FANOUT_QUEUE_SIZE"),
        heartbeat_seconds=duration(
            text("FANOUT_HEARTBEAT", str(d.heartbeat_seconds)), "FANOUT_HEARTBEAT"
        ),
        ping_seconds=duration(
            text("FANOUT_PING_INTERVAL", str(d.ping_seconds)), "FANOUT_PING_INTERVAL"
        ),
        lookback_seconds=duration(
            text("FANOUT_LOOKBACK", str(d.lookback_seconds)), "FANOUT_LOOKBACK"
        ),
        keep_finished_seconds=duration(
            text("FANOUT_KEEP_FINISHED", str(d.keep_finished_seconds)), "FANOUT_KEEP_FINISHED"
        ),
        replay_max_events=integer(
            text("FANOUT_REPLAY_MAX_EVENTS", str(d.replay_max_events)), "FANOUT_REPLAY_MAX_EVENTS"
        ),
        send_buffer_bytes=size(
            text("FANOUT_SEND_BUFFER", str(d.send_buffer_bytes)), "FANOUT_SEND_BUFFER"
        ),
        cors=cors_policy(env.get("INGEST_CORS_ORIGINS", "")),
        s3=s3_endpoint_from_env(env),
        s3_bucket=text("S3_BUCKET", d.s3_bucket),
    )
    check(settings)
    return settings


def check(settings: FanoutSettings) -> None:
    """SettingsError for limits that cannot work and for a missing or unusable JWT key."""
    if settings.max_connections < 1 or settings.max_connections_per_user < 1:
        raise SettingsError(
            "FANOUT_MAX_CONNECTIONS and FANOUT_MAX_CONNECTIONS_PER_USER must be at least 1"
        )
    if settings.queue_size < 1 or settings.heartbeat_seconds <= 0 or settings.ping_seconds <= 0:
        raise SettingsError(
            "FANOUT_QUEUE_SIZE, FANOUT_HEARTBEAT and FANOUT_PING_INTERVAL must be positive"
        )
    if not (settings.jwt_secret or settings.jwt_public_key):
        raise SettingsError("set INGEST_JWT_SECRET (HS256) or INGEST_JWT_PUBLIC_KEY (RS256)")
    try:
        settings.verifier()
    except KeyConfigurationError as error:
        raise SettingsError(f"the JWT key: {error}") from None
