"""tus-js-client's browser build in a real (headless) Chromium, on a page from another origin.

A tiny aiohttp server on another loopback port serves the page (tests/js/tus-page.html),
tus-js-client's bundle from its npm install and a generated video; the page fetches the
video as a Blob and uploads it with tus-js-client to an ingest server on MinIO and Kafka.
With the page's origin in INGEST_CORS_ORIGINS the upload is stored with the file's
SHA-256; where the server lists another origin only, the browser refuses the call
(tus-js-client's onError, a CORS error in the console) and no upload exists.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp import web

from infra.cors import cors_policy
from infra.layout import UPLOADS_PREFIX, user_segment
from ingest.settings import IngestSettings
from tests.e2e.browser import Browser
from tests.integration.harness import RunningIngest, bucket_keys, running_ingest, stored_sha256
from tests.media import MiB, write_fake_video
from tests.tus_js import browser_bundle, client_dir

PAGE = Path(__file__).resolve().parents[1] / "js" / "tus-page.html"
SIZE = 6 * MiB


@pytest.fixture(scope="module")
def bundle() -> Path:
    return browser_bundle(client_dir())


@pytest.fixture
async def page_origin(bundle: Path, tmp_path: Path) -> AsyncIterator[str]:
    """The other origin: serves the page, tus-js-client's bundle and the video to send."""
    files = {"/": PAGE, "/tus.min.js": bundle, "/clip.mp4": tmp_path / "clip.mp4"}

    async def serve(request: web.Request) -> web.FileResponse:
        return web.FileResponse(files[request.path])

    app = web.Application()
    for path in files:
        app.router.add_get(path, serve)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def _serving(settings: IngestSettings, origins: str) -> AsyncIterator[RunningIngest]:
    async with running_ingest(
        msgspec.structs.replace(settings, cors=cors_policy(origins))
    ) as server:
        yield server


def _upload_in_page(browser: Browser, origin: str, config: dict[str, Any]) -> dict[str, Any]:
    """Open the page, start the upload, wait for tus-js-client's outcome (in a worker thread:
    Selenium blocks)."""
    browser.driver.get(f"{origin}/")
    browser.driver.execute_script("startUpload(arguments[0])", config)
    result: dict[str, Any] = browser.wait(
        "the upload's outcome", lambda: browser.driver.execute_script("return window.tusResult")
    )
    return result


async def _upload(
    browser: Browser, origin: str, ingest: RunningIngest, user: str, tmp_path: Path
) -> tuple[dict[str, Any], str]:
    sha256 = await asyncio.to_thread(write_fake_video, tmp_path / "clip.mp4", SIZE, seed=91)
    config = {
        "endpoint": f"{ingest.url}/v1/tus/",
        "token": ingest.token(user),
        "file": "/clip.mp4",
        "filename": "from-the-browser.mp4",
        "retryDelays": [],
    }
    return await asyncio.to_thread(_upload_in_page, browser, origin, config), sha256


async def test_an_allowed_origin_uploads_with_tus_js_client(
    settings: IngestSettings, browser: Browser, page_origin: str, tmp_path: Path
) -> None:
    async with _serving(settings, page_origin) as ingest:
        result, sha256 = await _upload(browser, page_origin, ingest, "allowed", tmp_path)
        assert result["outcome"] == "success", result
        session, _ = await ingest.services.sessions.load(result["url"].rsplit("/", 1)[-1])
        assert session.status == "completed"
        assert session.user_id == "allowed"
        assert await stored_sha256(settings, session.s3_key) == (sha256, SIZE)


async def test_an_origin_not_listed_is_refused_by_the_browser(
    settings: IngestSettings, browser: Browser, page_origin: str, tmp_path: Path
) -> None:
    async with _serving(settings, "https://app.example.com") as ingest:
        result, _ = await _upload(browser, page_origin, ingest, "refused", tmp_path)
        assert result["outcome"] == "error", result
        assert "failed to create upload" in result["error"]
        assert "response code: n/a" in result["error"], "the browser let the page read it"
        console = await asyncio.to_thread(browser.driver.get_log, "browser")
        assert any("CORS policy" in entry["message"] for entry in console), console
        assert await ingest.services.sessions.list_for_user("refused") == []
        assert await bucket_keys(settings, f"{UPLOADS_PREFIX}{user_segment('refused')}/") == []
