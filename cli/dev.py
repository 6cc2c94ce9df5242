"""`ingest dev`: the whole service in one process on one port, for trying it out.

On the embedded default it needs nothing else: uploads and session documents go
to a directory on local disk and events to an in-process bus. When
KAFKA_BOOTSTRAP_SERVERS and S3_ENDPOINT_URL are both set, it runs on them
instead. Either way the live service (WebSocket feed, live progress) runs in
the same process on the same port, reading the same events. It prints the
URL, the dashboard link and a ready-to-use token.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import msgspec
from aiohttp import web

from cli.composition import ingest_services, quota_view, wire_services
from cli.fanout import live_on_kafka
from consumers.fanout.app import add_live_routes
from consumers.fanout.dashboard import add_dashboard_routes
from consumers.fanout.service import LiveService, running_live
from consumers.fanout.settings import FanoutSettings, fanout_settings_from_env
from consumers.quota import quota_app
from consumers.runtime import ConsumerApp
from consumers.runtime.inprocess import consumers_on_bus
from infra.bus import BusTopicReader, InProcessEventBus
from infra.bus.ranges import BusRangeReader
from infra.env import SettingsError
from infra.feeds import RecordHandler, TopicReader
from ingest.adapters.local_documents import LocalDocumentStore
from ingest.adapters.local_store import LocalObjectStore
from ingest.auth import KeyConfigurationError, check_hs256_secret, issue_token
from ingest.http.app import build_app, start_serving, stop_gracefully
from ingest.http.metrics import IngestMetrics
from ingest.http.services import IngestServices
from ingest.settings import IngestSettings
from ingest.usecases.quota import QuotaSnapshots
from schemas import Topics

log = logging.getLogger(__name__)

DEV_USER = "dev"
TOKEN_TTL_SECONDS = 7 * 24 * 3600


def uses_real_services(environ: Mapping[str, str]) -> bool:
    return bool(environ.get("KAFKA_BOOTSTRAP_SERVERS") and environ.get("S3_ENDPOINT_URL"))


def dev_settings(settings: IngestSettings, environ: Mapping[str, str]) -> IngestSettings:
    """Settings for dev: a JWT secret of its own (kept in the data dir) when none is set.

    A kept secret too short for HS256 (edited by hand) raises SettingsError.
    """
    if settings.jwt_secret or settings.jwt_public_key:
        return settings
    secret_file = settings.data_dir / "dev-jwt-secret"
    if secret_file.exists():
        secret = secret_file.read_text().strip()
        try:
            check_hs256_secret(secret)
        except KeyConfigurationError as error:
            raise SettingsError(f"{secret_file}: {error}; delete it to get a new one") from None
    else:
        secret_file.parent.mkdir(parents=True, exist_ok=True)
        secret = secrets.token_urlsafe(48)
        secret_file.write_text(secret)
        secret_file.chmod(0o600)
    return msgspec.structs.replace(settings, jwt_secret=secret)


def dev_fanout_settings(settings: IngestSettings, environ: Mapping[str, str]) -> FanoutSettings:
    """The live service's settings from the environment, on dev's key, host and port."""
    keys = {
        "INGEST_JWT_SECRET": settings.jwt_secret or "",
        "INGEST_JWT_PUBLIC_KEY": settings.jwt_public_key or "",
    }
    return msgspec.structs.replace(
        fanout_settings_from_env({**environ, **keys}),
        kafka_bootstrap_servers=settings.kafka_bootstrap_servers,
        topic_prefix=settings.topic_prefix,
        host=settings.host,
        port=settings.port,
    )


@asynccontextmanager
async def dev_services(
    settings: IngestSettings, real: bool, environ: Mapping[str, str]
) -> AsyncIterator[tuple[IngestServices, LiveService]]:
    """The write path and the live service, on Kafka and S3 or embedded on one bus."""
    fanout = dev_fanout_settings(settings, environ)
    if real:
        async with (
            ingest_services(settings) as services,
            live_on_kafka(fanout, f"fanout-dev-{settings.instance_id}") as live,
        ):
            yield services, live
        return
    bus = InProcessEventBus(
        Topics(settings.topic_prefix), source=f"/ingest-dev/{settings.instance_id}"
    )

    def open_reader(topic: str, handler: RecordHandler, since: float) -> TopicReader:
        return BusTopicReader(bus, topic, handler, since=since)

    async with (
        bus,
        embedded_services(settings, bus) as services,
        running_live(fanout, bus.topics, open_reader, BusRangeReader(bus)) as live,
    ):
        yield services, live


@asynccontextmanager
async def embedded_services(
    settings: IngestSettings, bus: InProcessEventBus
) -> AsyncIterator[IngestServices]:
    metrics = IngestMetrics()
    data = settings.data_dir
    async with AsyncExitStack() as stack:
        snapshots = QuotaSnapshots()
        quota_feed = await stack.enter_async_context(
            BusTopicReader(bus, bus.topics.quota, snapshots.apply)
        )
        await stack.enter_async_context(consumers_on_bus(bus, dev_consumers(settings, bus)))
        yield wire_services(
            settings,
            store=LocalObjectStore(data / "objects", settings.s3_bucket),
            documents=LocalDocumentStore(data / "state"),
            sink=bus,
            quota=quota_view(settings, snapshots, quota_feed),
            metrics=metrics,
        )


async def run_dev(settings: IngestSettings, *, environ: Mapping[str, str] = os.environ) -> None:
    real = uses_real_services(environ)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with dev_services(settings, real, environ) as (services, live):
        app = with_dashboard(build_app(services))
        add_live_routes(app, live)
        runner = await start_serving(
            app,
            settings.host,
            settings.port,
            shutdown_timeout=settings.shutdown_grace_seconds + 5,
        )
        _announce(settings, real)
        try:
            await stop.wait()
        finally:
            await stop_gracefully(runner)


def with_dashboard(app: web.Application) -> web.Application:
    add_dashboard_routes(app)
    return app


def _announce(settings: IngestSettings, real: bool) -> None:
    assert settings.jwt_secret is not None
    token = issue_token(settings.jwt_secret, DEV_USER, ttl_seconds=TOKEN_TTL_SECONDS)
    admin = issue_token(settings.jwt_secret, "admin", admin=True, ttl_seconds=TOKEN_TTL_SECONDS)
    url = f"http://{settings.host}:{settings.port}"
    where = (
        f"Kafka {settings.kafka_bootstrap_servers} and S3 {settings.s3_endpoint_url}"
        if real
        else f"embedded: local disk under {Path(settings.data_dir).resolve()}, in-process events"
    )
    print(
        f"""
ingest dev is running ({where})

  API        {url}/v1/uploads
  dashboard  {url}/dashboard?token={token}
  live feed  ws://{settings.host}:{settings.port}/ws/upload-progress?token=...

  token for user "{DEV_USER}" (7 days):
    export INGEST_URL={url} INGEST_TOKEN={token}
  admin token:
    {admin}

  try: ingest upload some-video.mp4
""",
        flush=True,
    )


def dev_consumers(settings: IngestSettings, bus: InProcessEventBus) -> list[ConsumerApp]:
    """Every consumer, on the same bus as the write path, as `ingest consume` runs them on Kafka."""

    def open_reader(topic: str, handler: RecordHandler) -> TopicReader:
        return BusTopicReader(bus, topic, handler)

    return [
        quota_app(
            bus.topics,
            bus,
            open_reader,
            bytes_limit=settings.quota_bytes,
            uploads_limit=settings.quota_uploads,
            period_days=settings.quota_period_days,
        )
    ]
