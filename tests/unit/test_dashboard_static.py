"""The dashboard's files as the server answers them: types, revalidation, no strays."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from consumers.fanout.dashboard import STATIC, add_dashboard_routes

Client = TestClient[web.Request, web.Application]
# Read here, outside the event loop the async tests run in.
ON_DISK = {path.name: path.read_bytes() for path in STATIC.iterdir() if path.is_file()}


@pytest.fixture
async def client(aiohttp_client: Callable[[web.Application], Awaitable[Client]]) -> Client:
    app = web.Application()
    add_dashboard_routes(app)
    return await aiohttp_client(app)


@pytest.mark.parametrize("path", ["/dashboard", "/dashboard/videos/some-video/results"])
async def test_pages_are_html_revalidated_and_locked_to_this_origin(
    client: Client, path: str
) -> None:
    response = await client.get(path)
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-cache"
    assert re.fullmatch(r'"[0-9a-f]{32}"', response.headers["ETag"])
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    # The link `ingest dev` prints carries a token: no Referer may repeat it.
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "<title>" in await response.text()


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("dashboard.js", "text/javascript; charset=utf-8"),
        ("tus.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("icon.svg", "image/svg+xml"),
    ],
)
async def test_assets_carry_their_content_type(
    client: Client, name: str, content_type: str
) -> None:
    response = await client.get(f"/dashboard/static/{name}")
    assert response.status == 200
    assert response.headers["Content-Type"] == content_type
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert await response.read() == ON_DISK[name]


async def test_an_unchanged_file_is_answered_304_and_a_changed_one_in_full(
    client: Client,
) -> None:
    first = await client.get("/dashboard/static/feed.js")
    etag = first.headers["ETag"]
    again = await client.get("/dashboard/static/feed.js", headers={"If-None-Match": etag})
    assert again.status == 304
    assert await again.read() == b""
    assert again.headers["ETag"] == etag
    listed = await client.get(
        "/dashboard/static/feed.js", headers={"If-None-Match": f'"other", W/{etag}'}
    )
    assert listed.status == 304
    stale = await client.get("/dashboard/static/feed.js", headers={"If-None-Match": '"old"'})
    assert stale.status == 200
    assert await stale.read() == ON_DISK["feed.js"]


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard/static/missing.js",
        "/dashboard/static/dashboard.html",  # pages only at their own routes
        "/dashboard/static/..%2Fdashboard.py",
        "/dashboard/static/%2E%2E%2F__init__.py",
    ],
)
async def test_anything_else_is_a_json_404(client: Client, path: str) -> None:
    response = await client.get(path)
    assert response.status == 404
    body = await response.json()
    assert body["error_code"] == "NOT_FOUND"
    assert set(body) == {"error_code", "error_message", "details", "timestamp"}


async def test_the_trailing_slash_redirects_to_the_dashboard(client: Client) -> None:
    response = await client.get("/dashboard/", allow_redirects=False)
    assert response.status == 308
    assert response.headers["Location"] == "/dashboard"


def test_every_script_and_module_import_names_a_served_file() -> None:
    referenced: set[str] = set()
    for page in STATIC.glob("*.html"):
        referenced |= set(re.findall(r'(?:src|href)="/dashboard/static/([^"]+)"', page.read_text()))
    for script in STATIC.glob("*.js"):
        referenced |= set(re.findall(r'from "\./([^"]+)"', script.read_text()))
    assert referenced
    assert referenced <= {path.name for path in STATIC.iterdir()}
