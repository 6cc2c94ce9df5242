"""Forged and malformed bearer tokens against live servers: always 401 in the JSON error shape.

Tokens are assembled by hand (header, claims, signature), since a JWT library
refuses to make most of them: `alg: none`, an HS256 token whose secret is the
server's RS256 public key (the algorithm-confusion attack), expired tokens and
claims of the wrong type. One server verifies HS256 with a shared secret, one
RS256 with a public key. Every refusal is 401 with `WWW-Authenticate` and the
JSON error body, and leaves nothing in the bucket.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jwt
import msgspec
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ingest.settings import IngestSettings
from tests.integration.harness import RunningIngest, bucket_keys, running_ingest

ERROR_FIELDS = {"error_code", "error_message", "details", "timestamp"}

PRIVATE_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUBLIC_PEM = (
    PRIVATE_KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], hs256_key: bytes | None = None) -> str:
    """A compact JWT: signed with HMAC-SHA256 under `hs256_key`, or with no signature."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = b""
    if hs256_key is not None:
        signature = hmac.new(hs256_key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "mallory", "roles": ["admin"], "iat": now, "exp": now + 600, **overrides}


HS = {"alg": "HS256", "typ": "JWT"}


@pytest.fixture
async def rs256_ingest(settings: IngestSettings) -> AsyncIterator[RunningIngest]:
    rs256 = msgspec.structs.replace(settings, jwt_secret=None, jwt_public_key=PUBLIC_PEM)
    async with running_ingest(rs256) as server:
        yield server


async def _assert_refused(http: aiohttp.ClientSession, url: str, token: str) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    for method, path, body in (
        ("GET", "/v1/quota", None),
        ("POST", "/v1/uploads", {"filename": "forged.mp4"}),
        ("PUT", "/v1/admin/quotas/mallory", {"quota_limit": 1}),
    ):
        async with http.request(method, f"{url}{path}", json=body, headers=headers) as response:
            refusal = await response.json()
            assert response.status == 401, (method, path, refusal)
            assert set(refusal) == ERROR_FIELDS
            assert refusal["error_code"] == "UNAUTHORIZED"
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert token not in await response.text()


def _hs256_attacks(secret: str) -> dict[str, str]:
    key = secret.encode()
    return {
        "alg none": forge({"alg": "none", "typ": "JWT"}, claims()),
        "alg None": forge({"alg": "None"}, claims()),
        "alg none with a signature": forge({"alg": "none"}, claims(), key),
        "RS256 header, HS256 signature": forge({"alg": "RS256"}, claims(), key),
        "signed with another secret": forge(HS, claims(), b"x" * 48),
        "RS256 with a private key the server never saw": jwt.encode(
            claims(), PRIVATE_KEY, algorithm="RS256"
        ),
        "expired": forge(HS, claims(exp=int(time.time()) - 3600), key),
        "no exp": forge(HS, {"sub": "mallory"}, key),
        "no sub": forge(HS, {"exp": int(time.time()) + 600}, key),
        "sub a number": forge(HS, claims(sub=42), key),
        "sub a list": forge(HS, claims(sub=["mallory"]), key),
        "sub empty": forge(HS, claims(sub=""), key),
        "sub over 256 characters": forge(HS, claims(sub="m" * 257), key),
        "exp a string": forge(HS, claims(exp=str(int(time.time()) + 600)), key),
        "exp an object": forge(HS, claims(exp={"at": 1}), key),
        "not yet valid": forge(HS, claims(nbf=int(time.time()) + 3600), key),
        "claims not an object": forge(HS, ["sub", "mallory"], key),  # type: ignore[arg-type]
        "truncated": forge(HS, claims(), key)[:-10],
        "two parts": ".".join(forge(HS, claims(), key).split(".")[:2]),
    }


@pytest.mark.parametrize("attack", sorted(_hs256_attacks("x" * 32)))
async def test_forged_tokens_are_refused_by_the_hs256_server(
    ingest: RunningIngest, http: aiohttp.ClientSession, settings: IngestSettings, attack: str
) -> None:
    secret = ingest.services.settings.jwt_secret
    assert secret is not None
    before = await bucket_keys(settings)
    await _assert_refused(http, ingest.url, _hs256_attacks(secret)[attack])
    assert await bucket_keys(settings) == before


RS256_ATTACKS = {
    # The algorithm-confusion attack: the public key is public, so an attacker can
    # "sign" HS256 with it; a verifier that takes the header's algorithm would accept.
    "HS256 signed with the public key PEM": forge(HS, claims(), PUBLIC_PEM.encode()),
    "HS256 signed with the stripped PEM": forge(HS, claims(), PUBLIC_PEM.strip().encode()),
    "HS256 signed with the DER key": forge(
        HS,
        claims(),
        PRIVATE_KEY.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    ),
    "alg none": forge({"alg": "none"}, claims()),
    "RS256 signed by another key": jwt.encode(
        claims(), rsa.generate_private_key(public_exponent=65537, key_size=2048), algorithm="RS256"
    ),
    "RS256, expired": jwt.encode(
        claims(exp=int(time.time()) - 3600), PRIVATE_KEY, algorithm="RS256"
    ),
    "RS256, sub a number": jwt.encode(claims(sub=7), PRIVATE_KEY, algorithm="RS256"),
}


@pytest.mark.parametrize("attack", sorted(RS256_ATTACKS))
async def test_forged_tokens_are_refused_by_the_rs256_server(
    rs256_ingest: RunningIngest,
    http: aiohttp.ClientSession,
    settings: IngestSettings,
    attack: str,
) -> None:
    before = await bucket_keys(settings)
    await _assert_refused(http, rs256_ingest.url, RS256_ATTACKS[attack])
    assert await bucket_keys(settings) == before


async def test_the_rs256_server_accepts_its_own_tokens(
    rs256_ingest: RunningIngest, http: aiohttp.ClientSession
) -> None:
    # The refusals above are the key's doing, not a server that refuses everything.
    token = jwt.encode(claims(sub="alice", roles=[]), PRIVATE_KEY, algorithm="RS256")
    async with http.get(
        f"{rs256_ingest.url}/v1/quota", headers={"Authorization": f"Bearer {token}"}
    ) as response:
        assert response.status == 200, await response.text()
        assert (await response.json())["user_id"] == "alice"


@pytest.mark.parametrize("roles", ["admin", {"admin": True}, [["admin"]], 1])
async def test_roles_of_another_shape_grant_no_admin_route(
    ingest: RunningIngest, http: aiohttp.ClientSession, roles: object
) -> None:
    """A well-signed token whose `roles` is not a list of strings names its user, but
    grants nothing: the admin route answers 403, the user's own routes still work."""
    secret = ingest.services.settings.jwt_secret
    assert secret is not None
    token = forge(HS, claims(sub="odd-roles", roles=roles), secret.encode())
    headers = {"Authorization": f"Bearer {token}"}
    async with http.put(
        f"{ingest.url}/v1/admin/quotas/odd-roles", json={"quota_limit": 1}, headers=headers
    ) as response:
        refusal = await response.json()
        assert response.status == 403, refusal
        assert set(refusal) == ERROR_FIELDS
    async with http.get(f"{ingest.url}/v1/quota", headers=headers) as response:
        assert response.status == 200
