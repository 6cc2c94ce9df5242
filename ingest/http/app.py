"""The ingest aiohttp application: routes, error middleware, and graceful shutdown.

Graceful shutdown must drain uploads *before* aiohttp's own shutdown starts:
once aiohttp closes its connections for shutdown it drops every byte that
still arrives on them, so a body in flight could never finish. `stop_gracefully`
therefore stops listening, gives uploads in flight the grace period, stops the
rest (multipart upload aborted, `upload.failed` emitted), and only then hands
over to aiohttp. The `on_shutdown` hook is the same drain for runners that skip it.
"""

from __future__ import annotations

import logging

from aiohttp import web

from ingest.http.dashboard import add_dashboard_routes
from ingest.http.errors import error_middleware
from ingest.http.routes import add_routes
from ingest.http.services import SERVICES, IngestServices

log = logging.getLogger(__name__)

# Session and small JSON bodies only: upload bodies are streamed and counted by the pipeline.
MAX_JSON_BODY = 1024 * 1024


def build_app(services: IngestServices, *, dashboard: bool = False) -> web.Application:
    app = web.Application(middlewares=[error_middleware], client_max_size=MAX_JSON_BODY)
    app[SERVICES] = services
    add_routes(app)
    if dashboard:
        add_dashboard_routes(app)
    app.on_shutdown.append(_drain_uploads)
    return app


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
