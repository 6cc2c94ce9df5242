"""Browser pages on other origins: preflights, exposed headers, refusals, the setting."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from infra.cors import CorsPolicy, cors_policy
from infra.env import SettingsError
from tests.unit.test_tus_support import ClientFactory, TusRig, auth, create, metadata_header

APP = "https://app.example.com"
OTHER = "https://evil.example.net"


def preflight(method: str, *headers: str, origin: str = APP) -> dict[str, str]:
    asked = {"Access-Control-Request-Headers": ", ".join(headers)} if headers else {}
    return {"Origin": origin, "Access-Control-Request-Method": method, **asked}


async def client_for(aiohttp_client: ClientFactory, policy: CorsPolicy) -> TestClient[Any, Any]:
    return (await TusRig(cors=policy).instance(aiohttp_client)).client


async def test_preflight_for_a_route_without_options_handler(aiohttp_client: ClientFactory) -> None:
    client = await client_for(aiohttp_client, cors_policy(APP))

    response = await client.options(
        "/v1/uploads", headers=preflight("POST", "authorization", "content-type")
    )

    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == APP
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    allowed = response.headers["Access-Control-Allow-Headers"].lower()
    assert {"authorization", "content-type", "upload-offset", "tus-resumable"} <= {
        name.strip() for name in allowed.split(",")
    }
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert "Origin" in response.headers["Vary"]


async def test_preflight_for_tus_is_answered_before_tus_discovery(
    aiohttp_client: ClientFactory,
) -> None:
    client = await client_for(aiohttp_client, cors_policy(APP))

    response = await client.options(
        "/v1/tus/some-upload", headers=preflight("PATCH", "upload-offset", "content-type")
    )

    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == APP
    assert "PATCH" in response.headers["Access-Control-Allow-Methods"]
    assert "Tus-Version" not in response.headers


async def test_tus_discovery_from_an_allowed_origin_still_reaches_tus(
    aiohttp_client: ClientFactory,
) -> None:
    client = await client_for(aiohttp_client, cors_policy(APP))

    response = await client.options("/v1/tus/", headers={"Origin": APP})

    assert response.status == 204
    assert response.headers["Tus-Version"] == "1.0.0"
    assert response.headers["Access-Control-Allow-Origin"] == APP


async def test_tus_creation_exposes_location_and_upload_headers(
    aiohttp_client: ClientFactory,
) -> None:
    client = await client_for(aiohttp_client, cors_policy(APP))

    response = await client.post(
        "/v1/tus/",
        headers=auth(
            Origin=APP,
            **{"Upload-Length": "2048", "Upload-Metadata": metadata_header(filename="a.mp4")},
        ),
    )

    assert response.status == 201, await response.text()
    assert response.headers["Access-Control-Allow-Origin"] == APP
    exposed = {
        h.strip().lower() for h in response.headers["Access-Control-Expose-Headers"].split(",")
    }
    assert {"location", "upload-offset", "upload-length", "upload-expires", "tus-resumable"} <= (
        exposed
    )
    assert {"upload-metadata", "tus-version", "tus-max-size"} <= exposed


async def test_errors_are_readable_by_an_allowed_origin(aiohttp_client: ClientFactory) -> None:
    client = await client_for(aiohttp_client, cors_policy(APP))

    response = await client.post("/v1/uploads", json={}, headers={"Origin": APP})

    assert response.status == 401
    assert response.headers["Access-Control-Allow-Origin"] == APP
    assert (await response.json())["error_code"]


async def test_an_origin_not_on_the_list_is_refused(aiohttp_client: ClientFactory) -> None:
    client = await client_for(aiohttp_client, cors_policy(APP))

    refused = await client.options("/v1/uploads", headers=preflight("POST", origin=OTHER))
    plain = await client.get("/healthz", headers={"Origin": OTHER})

    assert refused.status == 403
    assert (await refused.json())["error_code"] == "CORS_ORIGIN_NOT_ALLOWED"
    assert "Access-Control-Allow-Origin" not in refused.headers
    assert plain.status == 200
    assert "Access-Control-Allow-Origin" not in plain.headers


async def test_nothing_is_allowed_by_default(aiohttp_client: ClientFactory) -> None:
    client = await client_for(aiohttp_client, CorsPolicy())

    refused = await client.options("/v1/tus/", headers=preflight("POST"))
    upload_id = await create(client, 2048, Origin=APP)
    head = await client.head(f"/v1/tus/{upload_id}", headers=auth(Origin=APP))

    assert refused.status == 403
    assert head.status == 200
    assert "Access-Control-Allow-Origin" not in head.headers


async def test_any_origin_without_credentials(aiohttp_client: ClientFactory) -> None:
    client = await client_for(aiohttp_client, cors_policy("*"))

    response = await client.options("/v1/uploads/x", headers=preflight("DELETE", origin=OTHER))
    status = await client.get("/v1/uploads/x", headers={"Origin": OTHER})

    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert status.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in status.headers


def test_the_setting_takes_origins_and_refuses_anything_else() -> None:
    policy = cors_policy(" https://App.example.com/ ,http://localhost:3000,http://[::1]:8080")

    assert policy.allows("https://app.example.com")
    assert policy.allows("http://localhost:3000")
    assert policy.allows("http://[::1]:8080")
    assert not policy.allows("http://localhost:3001")
    assert cors_policy("") == CorsPolicy()
    for bad in ("https://app.example.com/path", "app.example.com", "ftp://x", "https://a b"):
        with pytest.raises(SettingsError, match="INGEST_CORS_ORIGINS"):
            cors_policy(bad)
