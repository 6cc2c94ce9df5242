"""The live service's HTTP routes: live progress, health, readiness, metrics, and their errors.

`GET /v1/uploads/{id}/progress` (alias `/v1/dashboard/upload/progress/{id}`)
answers from the hub's progress board: the caller's own upload (an admin:
anyone's), 404 for one the board does not know (never seen, or forgotten a
while after it ended), 403 for another user's. Errors have the project's
JSON body, built here so that these handlers answer the same whichever
application mounts them (`ingest dev` mounts them in the write path's).

How it fails: handlers never raise; a bad or missing token is 401, a token
in the URL of a REST route 401 too (only WebSocket routes accept one).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from consumers.fanout.service import LIVE, LiveService
from infra.errors import Unauthenticated
from infra.tokens import Principal
from schemas.api import ErrorBody

_encoder = msgspec.json.Encoder()
WEBSOCKET_PREFIX = "/ws/"


def json_error(
    status: int, error_code: str, message: str, details: dict[str, Any] | None = None
) -> web.Response:
    body = ErrorBody(
        error_code=error_code,
        error_message=message,
        details=details or {},
        timestamp=datetime.now(UTC),
    )
    headers = {"WWW-Authenticate": 'Bearer realm="ingest"'} if status == 401 else None
    return web.Response(
        status=status, body=_encoder.encode(body), content_type="application/json", headers=headers
    )


def principal(request: web.Request, live: LiveService) -> Principal:
    """The caller from `Authorization: Bearer`, or `?token=` on WebSocket routes only."""
    if "token" in request.query:
        if not request.path.startswith(WEBSOCKET_PREFIX):
            raise Unauthenticated(
                "a token in the URL is accepted only on WebSocket routes; "
                "send it in the Authorization header (Bearer)"
            )
        if "Authorization" not in request.headers:
            return live.verifier.verify(request.query["token"])
    return live.verifier.from_authorization(request.headers.get("Authorization"))


async def upload_progress(request: web.Request) -> web.Response:
    live = request.app[LIVE]
    try:
        user = principal(request, live)
    except Unauthenticated as error:
        return json_error(401, error.error_code, error.message)
    session_id = request.match_info["session_id"]
    found = live.hub.board.get(session_id)
    if found is None:
        return json_error(
            404,
            "UPLOAD_NOT_FOUND",
            "no upload with this id is known to the live service (never started, or ended a "
            "while ago: ask GET /v1/uploads/{id})",
            {"session_id": session_id},
        )
    owner, state = found
    if owner != user.user_id and not user.is_admin:
        return json_error(403, "FORBIDDEN", "this upload belongs to another user")
    return web.Response(body=_encoder.encode(state), content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    checks = request.app[LIVE].checks()
    ready = all(value == "ok" for value in checks.values())
    return web.json_response(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status=200 if ready else 503,
    )


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[LIVE].metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def add_progress_routes(app: web.Application) -> None:
    app.router.add_get("/v1/uploads/{session_id}/progress", upload_progress)
    app.router.add_get("/v1/dashboard/upload/progress/{session_id}", upload_progress)


def add_health_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
