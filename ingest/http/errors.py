"""Domain errors to HTTP responses: one table of statuses, one JSON error body.

Every error leaves as `{"error_code", "error_message", "details", "timestamp"}`.
Unexpected exceptions are logged with their stack and answered 500 INTERNAL
without leaking internals.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiohttp import web

from ingest import errors
from schemas.api import ErrorBody

log = logging.getLogger(__name__)

_STATUS: list[tuple[type[errors.IngestError], int]] = [
    (errors.InvalidRequest, 400),
    (errors.Unauthenticated, 401),
    (errors.Forbidden, 403),
    (errors.SessionNotFound, 404),
    (errors.SessionConflict, 409),
    (errors.VersionConflict, 409),
    (errors.UploadCancelledError, 409),
    (errors.FormatNotAllowed, 400),
    (errors.SizeNotAllowed, 400),
    (errors.TooSmall, 400),
    (errors.IncompleteBody, 400),
    (errors.TooLarge, 413),
    (errors.UnsupportedFormat, 415),
    (errors.QuotaExceeded, 429),
    (errors.ChecksumMismatch, 460),
    (errors.ClientDisconnected, 400),
    (errors.UploadTimeout, 408),
    (errors.StorageError, 502),
    (errors.ServiceUnavailable, 503),
    (errors.UnsupportedProtocolVersion, 412),
    (errors.OffsetMismatch, 409),
    (errors.UploadGone, 410),
    (errors.UploadLocked, 423),
]

_encoder = msgspec.json.Encoder()


def status_of(error: errors.IngestError) -> int:
    for kind, status in _STATUS:
        if isinstance(error, kind):
            return status
    return 500


def json_error(
    status: int,
    error_code: str,
    message: str,
    details: dict[str, Any] | None = None,
    *,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body = ErrorBody(
        error_code=error_code,
        error_message=message,
        details=details or {},
        timestamp=datetime.now(UTC),
    )
    response = web.Response(
        status=status,
        body=_encoder.encode(body),
        content_type="application/json",
        headers=headers,
    )
    return response


def error_response(error: errors.IngestError) -> web.Response:
    status = status_of(error)
    headers = {"WWW-Authenticate": 'Bearer realm="ingest"'} if status == 401 else None
    if status == 503:
        headers = {"Retry-After": "5"}
    return json_error(status, error.error_code, error.message, error.details, headers=headers)


def validation_error(error: msgspec.MsgspecError) -> web.Response:
    # msgspec names the field in its message ("... - at `$.priority`"): surface it as `field`.
    message = str(error)
    field = message.rsplit("at `$.", 1)[-1].rstrip("`") if "at `$." in message else None
    details = {"field": field} if field else {}
    return json_error(400, "INVALID_REQUEST", message, details)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except errors.IngestError as error:
        return error_response(error)
    except msgspec.MsgspecError as error:
        return validation_error(error)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        code = error.reason.upper().replace(" ", "_")
        return json_error(error.status, code, error.text or error.reason)
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return json_error(500, "INTERNAL", "an internal error occurred; it has been logged")
