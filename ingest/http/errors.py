"""Domain errors to HTTP responses: one table of statuses, one JSON error body.

Every error leaves as `{"error_code", "error_message", "details", "timestamp"}`.
A 5xx body never carries the error's own message or details (they can name
endpoints, buckets and keys): those are logged with the request id, and the body
has a generic message and `details: {"request_id"}`. The same holds for a 4xx
whose details name storage internals (a checksum S3 refused, a lost
compare-and-swap on a state document). Unexpected exceptions are
logged with their stack and answered 500 INTERNAL the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiohttp import web

from ingest import errors
from ingest.http.requestid import HEADER, request_id
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
    # Not 423: tus defines no such status; on 409 a tus client asks for the offset again.
    (errors.UploadLocked, 409),
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


_GENERIC = {
    502: "a service this one depends on failed; retry later",
    503: "the service is unavailable for now; retry shortly",
    504: "the request took too long; retry later",
}


def server_error(status: int, rid: str, error_code: str = "INTERNAL") -> web.Response:
    """A 5xx that shows nothing but a generic message and the request id."""
    message = _GENERIC.get(status, "an internal error occurred; it has been logged")
    response = json_error(status, error_code, message, {"request_id": rid})
    response.headers[HEADER] = rid
    if status == 503:
        response.headers["Retry-After"] = "5"
    return response


_INTERNAL_DETAILS = frozenset({"bucket", "key", "endpoint", "operation"})
"""Details only storage errors carry: an error naming them says nothing a client may read."""

_GENERIC_4XX = {
    409: "another request changed this upload at the same moment; retry",
    460: "the stored data did not match its checksum; send it again",
}


def error_response(error: errors.IngestError, request: web.BaseRequest) -> web.Response:
    status = status_of(error)
    if status < 500 and _INTERNAL_DETAILS & set(error.details):
        # A 4xx raised by storage (S3 refusing a part's checksum, a lost compare-and-swap on
        # a state document) names buckets and keys: logged, like a 5xx, never answered.
        rid = request_id(request)
        log.warning(
            "request %s (%s %s) refused: %s %s %s",
            rid,
            request.method,
            request.path,
            error.error_code,
            error.message,
            error.details,
        )
        message = _GENERIC_4XX.get(status, "the request could not be carried out; retry")
        response = json_error(status, error.error_code, message, {"request_id": rid})
        response.headers[HEADER] = rid
        return response
    if status >= 500:
        rid = request_id(request)
        log.error(
            "request %s (%s %s) failed: %s %s %s",
            rid,
            request.method,
            request.path,
            error.error_code,
            error.message,
            error.details,
        )
        return server_error(status, rid, error.error_code)
    headers = {"WWW-Authenticate": 'Bearer realm="ingest"'} if status == 401 else None
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
        return error_response(error, request)
    except msgspec.MsgspecError as error:
        return validation_error(error)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        if error.status >= 500:
            log.error(
                "request %s: %s %s answered %s",
                request_id(request),
                request.method,
                request.path,
                error,
            )
            return server_error(error.status, request_id(request))
        code = error.reason.upper().replace(" ", "_")
        return json_error(error.status, code, error.text or error.reason)
    except Exception:
        rid = request_id(request)
        log.exception("request %s: unhandled error in %s %s", rid, request.method, request.path)
        return server_error(500, rid)
