"""The live service's aiohttp application, and the routes it adds to another (`ingest dev`).

`add_live_routes` mounts the WebSocket feed and the live progress routes of
a running replica on any application, and closes its clients when that
application shuts down; `fanout_app` is the stand-alone application of
`ingest consume fanout`: those routes, `/healthz`, `/readyz`, `/metrics`,
the dashboard pages and the results of a video (`GET /v1/videos/{id}/results`,
read from the documents the detection consumer keeps), with the same
cross-origin policy as ingest (`INGEST_CORS_ORIGINS`).
"""

from __future__ import annotations

from aiohttp import web

from consumers.fanout.dashboard import add_dashboard_routes
from consumers.fanout.http import add_health_routes, add_progress_routes
from consumers.fanout.results import add_results_route
from consumers.fanout.service import LIVE, LiveService
from consumers.fanout.websocket import add_feed_routes
from infra.cors import install_cors
from infra.objects import Documents


def add_live_routes(app: web.Application, live: LiveService) -> None:
    app[LIVE] = live
    add_feed_routes(app)
    add_progress_routes(app)

    async def close_clients(_: web.Application) -> None:
        await live.close_clients()

    app.on_shutdown.append(close_clients)


def fanout_app(live: LiveService, results: Documents) -> web.Application:
    app = web.Application()
    install_cors(app, live.settings.cors)
    add_live_routes(app, live)
    add_health_routes(app)
    add_dashboard_routes(app)
    add_results_route(app, results, live.verifier)
    return app
