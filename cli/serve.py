"""Run `ingest serve`: build the services, serve HTTP, and shut down cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal

from cli.composition import ingest_services
from ingest.http.app import build_app, start_serving, stop_gracefully
from ingest.settings import IngestSettings

log = logging.getLogger(__name__)


async def serve(settings: IngestSettings, *, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with ingest_services(settings) as services:
            runner = await start_serving(
                build_app(services),
                settings.host,
                settings.port,
                shutdown_timeout=settings.shutdown_grace_seconds + 5,
            )
            log.info("ingest serving on http://%s:%d", settings.host, settings.port)
            try:
                await stop.wait()
                log.info("shutting down")
            finally:
                await stop_gracefully(runner)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
