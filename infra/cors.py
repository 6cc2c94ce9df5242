"""Cross-origin requests: which browser pages on other origins may call the API.

`INGEST_CORS_ORIGINS` lists exact origins (`https://app.example.com`) or `*`.
Nothing is allowed by default: a page on another origin is refused by the
browser, as it should be until an operator says otherwise. Tokens travel in
the `Authorization` header, never in cookies, so credentials are never
allowed and `*` is safe to offer.

A preflight (`OPTIONS` with `Access-Control-Request-Method`) is answered here
for every path, before routing, so a route that has no `OPTIONS` handler still
gets one, while tus's own `OPTIONS` (capability discovery, no
`Access-Control-Request-Method`) still reaches its handler. Every other
response to an allowed origin, errors included, names the origin and exposes
the headers a tus or upload client reads.

How it fails: a malformed origin in the setting raises SettingsError at start;
a preflight from an origin not on the list answers 403 with the JSON error
shape and no `Access-Control-*` header, so the browser refuses the call.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from infra.env import SettingsError
from schemas.api import ErrorBody

ALLOWED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
ALLOWED_HEADERS = (
    "Authorization",
    "Content-Type",
    "Content-Digest",
    "Repr-Digest",
    "X-Request-Id",
    "X-HTTP-Method-Override",
    "Tus-Resumable",
    "Upload-Length",
    "Upload-Offset",
    "Upload-Metadata",
    "Upload-Checksum",
    "Upload-Defer-Length",
    "Upload-Concat",
    "Upload-Complete",
    "Upload-Draft-Interop-Version",
)
EXPOSED_HEADERS = (
    "Location",
    "Upload-Offset",
    "Upload-Length",
    "Upload-Expires",
    "Upload-Metadata",
    "Upload-Defer-Length",
    "Upload-Concat",
    "Upload-Complete",
    "Tus-Resumable",
    "Tus-Version",
    "Tus-Extension",
    "Tus-Max-Size",
    "Tus-Checksum-Algorithm",
    "X-Request-Id",
    "Retry-After",
)
PREFLIGHT_MAX_AGE_SECONDS = 600

# scheme://host[:port], nothing after: what a browser sends in `Origin`.
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:\d{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:\d{1,5})?")


@dataclass(frozen=True)
class CorsPolicy:
    """The origins allowed to call the API from a browser; empty allows none."""

    origins: frozenset[str] = frozenset()

    @property
    def any_origin(self) -> bool:
        return "*" in self.origins

    def allows(self, origin: str) -> bool:
        return self.any_origin or origin.lower() in self.origins

    def allow_origin_value(self, origin: str) -> str:
        return "*" if self.any_origin else origin


def cors_policy(value: str, name: str = "INGEST_CORS_ORIGINS") -> CorsPolicy:
    """Parse a comma-separated list of origins, or `*`; SettingsError on anything else."""
    origins = [part.strip().rstrip("/").lower() for part in value.split(",") if part.strip()]
    for origin in origins:
        if origin != "*" and not _ORIGIN.fullmatch(origin):
            raise SettingsError(
                f"{name}: {origin!r} is not an origin (scheme://host[:port], e.g. "
                "https://app.example.com) nor *"
            )
    return CorsPolicy(frozenset(origins))


def cors_middleware(policy: CorsPolicy) -> Middleware:
    """Answer preflights before routing; everything else goes on to the handler."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if (
            origin is None
            or request.method != "OPTIONS"
            or "Access-Control-Request-Method" not in request.headers
        ):
            return await handler(request)
        if not policy.allows(origin):
            return _refused(origin)
        return web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Origin": policy.allow_origin_value(origin),
                "Access-Control-Allow-Methods": ", ".join(ALLOWED_METHODS),
                "Access-Control-Allow-Headers": ", ".join(ALLOWED_HEADERS),
                "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_SECONDS),
                "Vary": "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
            },
        )

    return middleware


def cors_response_headers(
    policy: CorsPolicy,
) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """`on_response_prepare` hook: an allowed origin may read every response, errors too."""

    async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
        origin = request.headers.get("Origin")
        if origin is None or not policy.origins:
            return
        response.headers.add("Vary", "Origin")
        if not policy.allows(origin) or "Access-Control-Allow-Origin" in response.headers:
            return
        response.headers["Access-Control-Allow-Origin"] = policy.allow_origin_value(origin)
        response.headers["Access-Control-Expose-Headers"] = ", ".join(EXPOSED_HEADERS)

    return add_headers


def install_cors(app: web.Application, policy: CorsPolicy) -> None:
    """Answer preflights and mark responses for `policy`; call before the app is frozen."""
    app.middlewares.insert(0, cors_middleware(policy))
    app.on_response_prepare.append(cors_response_headers(policy))


def _refused(origin: str) -> web.Response:
    body = ErrorBody(
        error_code="CORS_ORIGIN_NOT_ALLOWED",
        error_message="this origin may not call the API from a browser; "
        "an operator can allow it with INGEST_CORS_ORIGINS",
        details={"origin": origin[:200]},
        timestamp=datetime.now(UTC),
    )
    return web.Response(
        status=403,
        body=msgspec.json.encode(body),
        content_type="application/json",
        headers={"Vary": "Origin"},
    )
