"""The dashboard page: static files that drive the public API from the browser.

Served at `/dashboard` (the upload page) and `/dashboard/videos/{video_id}/results`.
The pages hold no state of their own: the token stays in the browser.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).parent / "static"


async def _page(name: str) -> web.FileResponse:
    return web.FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})


async def dashboard(request: web.Request) -> web.StreamResponse:
    return await _page("dashboard.html")


async def dashboard_script(request: web.Request) -> web.StreamResponse:
    return await _page("app.js")


async def video_results(request: web.Request) -> web.StreamResponse:
    return await _page("results.html")


def add_dashboard_routes(app: web.Application) -> None:
    app.router.add_get("/dashboard", dashboard)
    app.router.add_get("/dashboard/app.js", dashboard_script)
    app.router.add_get("/dashboard/videos/{video_id}/results", video_results)
