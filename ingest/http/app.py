"""The ingest aiohttp application: routes, error middleware, and graceful shutdown.

Graceful shutdown must drain uploads *before* aiohttp's own shutdown starts:
once aiohttp closes its connections for shutdown it drops every byte that
still arrives on them, so a body in flight could never finish. `stop_gracefully`
therefore stops listening, gives uploads in flight the grace period, stops the
rest (multipart upload aborted, `upload.failed` emitted), gives progress still
going out in the background a moment (then drops it), and only then hands
over to aiohttp. The `on_shutdown` hook is the same drain for runners that skip it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from infra.cors import install_cors
from ingest.errors import IngestError
from ingest.http.connections import ConnectionLimits, GuardedSite
from ingest.http.errors import error_middleware
from ingest.http.protocol import IngestRunner
from ingest.http.requestid import send_request_id
from ingest.http.requestlog import RequestLog, access_log
from ingest.http.routes import add_routes
from ingest.http.services import SERVICES, IngestServices
from ingest.pipeline.events import drop_progress_after

log = logging.getLogger(__name__)

# Session and small JSON bodies only: upload bodies are streamed and counted by the pipeline.
MAX_JSON_BODY = 1024 * 1024

READ_BUFSIZE = 16 * 1024
"""What aiohttp buffers ahead per connection (twice this) until a body is being read.

An upload waiting for memory holds only this much; `http.body` widens the window
of a body being read. At 1,000 concurrent uploads, aiohttp's default (64 KiB)
left the server at 1.35 GiB RSS, this at 0.85 GiB.
"""

LISTEN_BACKLOG = 1024
"""Connections the kernel holds until the server accepts them (capped by net.core.somaxconn).

aiohttp's default of 128 overflows when hundreds of clients connect at once, and
the kernel then resets some of them.
"""


def build_app(services: IngestServices) -> web.Application:
    app = web.Application(middlewares=[error_middleware], client_max_size=MAX_JSON_BODY)
    app[SERVICES] = services
    add_routes(app)
    install_cors(app, services.settings.cors)
    app.on_response_prepare.append(send_request_id)
    app.on_shutdown.append(_drain_uploads)
    app.cleanup_ctx.append(_relay_cancels)
    app.cleanup_ctx.append(_heartbeat_and_sweep)
    return app


async def start_serving(
    app: web.Application,
    host: str,
    port: int,
    *,
    shutdown_timeout: float,
    limits: ConnectionLimits | None = None,
) -> web.AppRunner:
    """Listen on host:port (0: a free port, see `runner.addresses`); stop with `stop_gracefully`.

    `limits` defaults to the header timeout, keep-alive timeout and connection cap
    of the app's settings.
    """
    if limits is None:
        settings = app[SERVICES].settings
        limits = ConnectionLimits(
            header_timeout=settings.header_timeout_seconds,
            keepalive_timeout=settings.keepalive_timeout_seconds,
            max_connections=settings.max_connections,
        )
    handler_args: dict[str, Any] = {
        "access_log_class": RequestLog,
        "access_log": access_log,
        "read_bufsize": READ_BUFSIZE,
        "keepalive_timeout": limits.keepalive_timeout,
    }
    runner = IngestRunner(app, shutdown_timeout=shutdown_timeout, **handler_args)
    await runner.setup()
    handler_args.pop("keepalive_timeout")
    site = GuardedSite(
        runner, host, port, limits=limits, handler_args=handler_args, backlog=LISTEN_BACKLOG
    )
    await site.start()
    return runner


async def stop_gracefully(runner: web.AppRunner) -> None:
    for site in list(runner.sites):
        await site.stop()
    await _drain_uploads(runner.app)
    await runner.cleanup()


async def _drain_uploads(app: web.Application) -> None:
    services = app[SERVICES]
    grace = services.settings.shutdown_grace_seconds
    if len(services.active):
        log.info(
            "shutting down: %d uploads in flight, %.0fs to finish", len(services.active), grace
        )
    stopped = await services.active.drain(grace)
    if stopped:
        log.warning("shutdown stopped %d uploads that did not finish in %.1fs", stopped, grace)
    # Progress still going out in the background (answered tus PATCHes) gets about one send's
    # time; what is left is dropped before the sink stops under it.
    dropped = await drop_progress_after(services.settings.kafka_send_timeout_seconds)
    if dropped:
        log.info("shutdown dropped the progress of %d uploads still sending it", dropped)


async def _heartbeat_and_sweep(app: web.Application) -> AsyncIterator[None]:
    """Say this instance is alive (before it serves), and sweep now and then.

    Stopped after the drain (cleanup runs after shutdown): an instance that stops
    beating is judged dead, and its uploads still draining would be failed under it.
    """
    services = app[SERVICES]
    settings = services.settings
    tasks: list[asyncio.Task[None]] = []
    if services.heartbeats is not None:
        try:
            await services.heartbeats.beat()
        except IngestError as error:
            # Not ready anyway while S3 fails (/readyz says so); beaten again shortly.
            log.warning("could not write the first heartbeat: %s", error)
        tasks.append(
            asyncio.create_task(
                services.heartbeats.run(settings.heartbeat_interval_seconds), name="heartbeat"
            )
        )
    if services.sweeper is not None and settings.sweep_interval_seconds > 0:
        tasks.append(
            asyncio.create_task(services.sweeper.run(settings.sweep_interval_seconds), name="sweep")
        )
    yield
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _relay_cancels(app: web.Application) -> AsyncIterator[None]:
    # Cleaned up after the drain, so that a cancel still stops an upload given its grace period.
    relay = asyncio.create_task(app[SERVICES].uploads.relay_cancels(), name="relay-cancels")
    yield
    relay.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await relay
