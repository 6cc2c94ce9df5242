"""`ingest dev` on the real Kafka and S3: the live service runs in its process, reading Kafka."""

from __future__ import annotations

import aiohttp

from cli.dev import dev_services, with_dashboard
from consumers.fanout.app import add_live_routes
from infra.tokens import issue_token
from ingest.http.app import build_app, start_serving, stop_gracefully
from ingest.settings import IngestSettings
from tests.integration.live import create_session, ended, listen, upload
from tests.media import MiB


async def test_dev_on_kafka_serves_the_feed_on_its_own_port(
    settings: IngestSettings, http: aiohttp.ClientSession
) -> None:
    async with dev_services(settings, True, {"FANOUT_LOOKBACK": "5m"}) as (services, live):
        app = with_dashboard(build_app(services))
        add_live_routes(app, live)
        runner = await start_serving(app, "127.0.0.1", 0, shutdown_timeout=5)
        try:
            port = runner.addresses[0][1]
            url = f"http://127.0.0.1:{port}"
            assert settings.jwt_secret is not None
            token = issue_token(settings.jwt_secret, "dev-live")
            auth = {"Authorization": f"Bearer {token}"}
            feed = await listen(http, f"ws://127.0.0.1:{port}/ws/upload-progress", token)
            session = await create_session(http, url, auth, 6 * MiB)
            result = await upload(http, url, session, auth, 6 * MiB)
            await feed.wait_for(ended(session["session_id"]))
            [complete] = [m for m in feed.events() if m["event_type"] == "upload_complete"]
            assert complete["data"]["video_id"] == result["video_id"]
            await feed.close()
        finally:
            await stop_gracefully(runner)
