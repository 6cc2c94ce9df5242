"""A token in the URL (`?token=`) is for WebSocket routes only: every REST route refuses it,
with or without a header, saying to use the Authorization header instead."""

from __future__ import annotations

import aiohttp
import pytest

from tests.integration.harness import RunningIngest


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/quota"),
        ("GET", "/v1/uploads"),
        ("POST", "/v1/uploads"),
        ("GET", "/v1/dashboard/upload/quota"),
        ("OPTIONS", "/v1/tus/"),
        ("POST", "/v1/tus/"),
    ],
)
async def test_rest_routes_refuse_a_token_in_the_url(
    ingest: RunningIngest, http: aiohttp.ClientSession, method: str, path: str
) -> None:
    token = ingest.token("url-token")
    for headers in ({}, {"Authorization": f"Bearer {token}"}):
        async with http.request(
            method,
            f"{ingest.url}{path}",
            params={"token": token},
            headers={**headers, "Tus-Resumable": "1.0.0", "Upload-Length": "4096"},
        ) as response:
            if method == "OPTIONS":
                # Discovery needs no credentials at all; a URL token gains nothing there.
                assert response.status in (200, 204), await response.text()
                continue
            body = await response.json()
            assert response.status == 401, body
            assert body["error_code"] == "UNAUTHORIZED"
            assert "Authorization header" in body["error_message"]
            assert token not in await response.text()

    async with http.get(f"{ingest.url}/v1/quota", headers=ingest.auth("url-token")) as ok:
        assert ok.status == 200
