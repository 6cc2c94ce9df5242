"""The dashboard: static pages and scripts that drive the public API from the browser.

Served at `/dashboard` (uploads, quota, the live feed) and
`/dashboard/videos/{video_id}/results` (one video's metadata and detection
outcome); their scripts and style sheet under `/dashboard/static/`. The pages
hold no state on the server: the token stays in the browser.

Every file is read once, when this module is imported (they are small, and
imports happen before any event loop runs), so neither adding the routes nor
a request touches the disk; a missing page stops the process at start
instead of answering 500 later. Each answer carries its content type, a strong
ETag of its bytes and `Cache-Control: no-cache`, so a browser revalidates on
every load (304 when nothing changed) and never runs a stale script after an
upgrade. A page is also answered with a Content-Security-Policy that only
allows this origin, and `Referrer-Policy: no-referrer`: the link `ingest dev`
prints carries a token in its query, which must not leak in a Referer header
while the page's own assets load.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import msgspec
from aiohttp import web

from schemas.api import ErrorBody

STATIC = Path(__file__).parent / "static"

_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}

_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str

    @classmethod
    def load(cls, path: Path) -> StaticFile:
        body = path.read_bytes()
        digest = hashlib.sha256(body).hexdigest()[:32]
        return cls(body, _CONTENT_TYPES[path.suffix], f'"{digest}"')

    def answer(self, request: web.Request, extra: dict[str, str] | None = None) -> web.Response:
        headers = {
            "ETag": self.etag,
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
            **(extra or {}),
        }
        if self.etag in _etags(request.headers.get("If-None-Match", "")):
            return web.Response(status=304, headers=headers)
        headers["Content-Type"] = self.content_type
        return web.Response(body=self.body, headers=headers)


def _not_found(name: str) -> web.Response:
    body = ErrorBody(
        error_code="NOT_FOUND",
        error_message="the dashboard has no such file",
        details={"name": name[:200]},
        timestamp=datetime.now(UTC),
    )
    return web.Response(status=404, body=msgspec.json.encode(body), content_type="application/json")


def _etags(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}


def load_static(directory: Path = STATIC) -> dict[str, StaticFile]:
    """Every servable file of the directory by name (no sub-directories, no dot files)."""
    return {
        path.name: StaticFile.load(path)
        for path in sorted(directory.iterdir())
        if path.is_file() and path.suffix in _CONTENT_TYPES and not path.name.startswith(".")
    }


FILES = load_static()


def add_dashboard_routes(app: web.Application, files: dict[str, StaticFile] = FILES) -> None:
    dashboard_page = files["dashboard.html"]
    results_page = files["results.html"]

    async def dashboard(request: web.Request) -> web.StreamResponse:
        return dashboard_page.answer(request, _PAGE_HEADERS)

    async def video_results(request: web.Request) -> web.StreamResponse:
        return results_page.answer(request, _PAGE_HEADERS)

    async def asset(request: web.Request) -> web.StreamResponse:
        found = files.get(request.match_info["name"])
        if found is None or found.content_type.startswith("text/html"):
            return _not_found(request.match_info["name"])
        return found.answer(request)

    async def to_dashboard(request: web.Request) -> web.StreamResponse:
        raise web.HTTPPermanentRedirect("/dashboard")

    app.router.add_get("/dashboard", dashboard)
    app.router.add_get("/dashboard/", to_dashboard)
    app.router.add_get("/dashboard/videos/{video_id}/results", video_results)
    app.router.add_get("/dashboard/static/{name}", asset)
