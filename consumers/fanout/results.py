"""`GET /v1/videos/{video_id}/results`: what the results page shows about a video of the caller.

The answer is the document the detection consumer keeps for the video
(`schemas.api.VideoResults`: the upload's facts and the detection's status
and outcome), read from the caller's own keys only (`infra.layout`
encodes the user into the key), so another user's video and a video that
does not exist answer the same 404: whether a video id exists is never
revealed to someone else.

Auth is the service's bearer JWT, checked by the verifier the process was
configured with (`add_results_route` takes it; a `?token=` in the URL is
refused, as on every REST route). Errors are the service's JSON body
`{"error_code", "error_message", "details", "timestamp"}`.

How it fails: 401 without a valid token, 404 as above, 503 (a generic body
with the request's id, the cause logged) when the documents cannot be read.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec
from aiohttp import web

from infra.errors import ServiceError
from infra.layout import detection_by_video
from infra.objects import Documents
from schemas.api import ErrorBody, VideoResults

log = logging.getLogger(__name__)

ROUTE = "/v1/videos/{video_id}/results"
MAX_VIDEO_ID = 256


class Caller(Protocol):
    @property
    def user_id(self) -> str: ...


class Verifier(Protocol):
    def from_authorization(self, header: str | None) -> Caller:
        """The caller of a valid `Bearer` header; a ServiceError saying why otherwise."""
        ...


_encoder = msgspec.json.Encoder()


def _error(
    status: int, code: str, message: str, details: dict[str, Any] | None = None
) -> web.Response:
    body = ErrorBody(
        error_code=code,
        error_message=message,
        details=details or {},
        timestamp=datetime.now(UTC),
    )
    headers = {"WWW-Authenticate": 'Bearer realm="ingest"'} if status == 401 else None
    return web.Response(
        status=status, body=_encoder.encode(body), content_type="application/json", headers=headers
    )


def _not_found(video_id: str) -> web.Response:
    return _error(404, "NOT_FOUND", f"no video {video_id!r} of yours")


class ResultsHandler:
    def __init__(self, documents: Documents, verifier: Verifier) -> None:
        self._documents = documents
        self._verifier = verifier

    async def get(self, request: web.Request) -> web.Response:
        if "token" in request.query:
            return _error(
                401,
                "UNAUTHORIZED",
                "a token in the URL is accepted only on WebSocket routes; "
                "send it in the Authorization header (Bearer)",
            )
        try:
            caller = self._verifier.from_authorization(request.headers.get("Authorization"))
        except ServiceError as error:
            return _error(401, "UNAUTHORIZED", error.message)
        video_id = request.match_info["video_id"]
        if not 0 < len(video_id) <= MAX_VIDEO_ID:
            return _not_found(video_id[:MAX_VIDEO_ID])
        key = detection_by_video(caller.user_id, video_id)
        try:
            data = await self._documents.read(key)
        except ServiceError as error:
            rid = uuid.uuid4().hex
            log.error("request %s: results of %s unreadable: %s", rid, key, error.message)
            return _error(
                503,
                "SERVICE_UNAVAILABLE",
                "results cannot be read now; retry shortly",
                {"request_id": rid},
            )
        if data is None:
            return _not_found(video_id)
        try:
            results = msgspec.json.decode(data, type=VideoResults)
        except msgspec.ValidationError:
            log.error("the results document %s does not decode", key)
            return _not_found(video_id)
        return web.Response(
            body=_encoder.encode(results),
            content_type="application/json",
            headers={"Cache-Control": "no-store"},
        )


def add_results_route(app: web.Application, documents: Documents, verifier: Verifier) -> None:
    app.router.add_get(ROUTE, ResultsHandler(documents, verifier).get)
