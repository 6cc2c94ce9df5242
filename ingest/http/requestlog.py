"""The request log: one line per request, and one per upload outcome, never showing a token.

aiohttp calls `RequestLog.log` once a response is sent, whoever built it (a
handler, the error middleware, or the connection handler refusing a broken
request). It writes:

- `ingest.access`: method, path, status, bytes sent, duration, request id and
  user; INFO when a request that changes something succeeded, DEBUG for a
  read that succeeded (status polls, probes), WARNING (with the `error_code`
  and `error_message` of the JSON error body) when any request failed;
- `ingest.uploads`: for a request that carried an upload body, what became of
  the upload: request id, user, session, protocol, bytes, duration, result
  (`completed`, `failed`, `cancelled`) and error code; the protocol is the
  request's (`stream`, `dashboard`, `tus`, `resumable`). A tus PATCH or a
  resumable append that stored a piece without finishing the upload is not an
  outcome: only the access line.

Query values of `token` (and of other credential names) are masked in the path;
headers are never logged, and `infra.logs` scrubs anything token-shaped from
every line besides. Logging never raises into the connection.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import msgspec
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from infra.logs import FIELDS, MASK
from ingest.http.requestid import request_id

access_log = logging.getLogger("ingest.access")
uploads_log = logging.getLogger("ingest.uploads")

_SECRET_PARAMS = frozenset({"token", "access_token", "jwt", "api_key", "password"})
_ERROR_BODY_LIMIT = 64 * 1024
_READS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass
class UploadNote:
    """What a handler knows of the upload its request carries, filled in as it goes."""

    session_id: str
    protocol: str
    size: int | None = None
    """The stored file's size, once the upload completed."""
    completed: bool = False


_USER = web.RequestKey("log_user", str)
_UPLOAD = web.RequestKey("log_upload", UploadNote)


def note_user(request: web.BaseRequest, user_id: str) -> None:
    request[_USER] = user_id


def note_upload(request: web.BaseRequest, session_id: str, protocol: str) -> UploadNote:
    note = UploadNote(session_id=session_id, protocol=protocol)
    request[_UPLOAD] = note
    return note


class _ErrorBody(msgspec.Struct):
    error_code: str | None = None
    error_message: str | None = None


_error_decoder = msgspec.json.Decoder(_ErrorBody)


class RequestLog(AbstractAccessLogger):
    """aiohttp's access-log hook, writing the lines above."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        try:
            self._log(request, response, time)
        except Exception:  # a log line is never worth a connection
            access_log.exception("could not write the request log line")

    def _log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        status = response.status
        error = _error_of(response) if status >= 400 else _ErrorBody()
        common = {
            "request_id": request_id(request),
            "user": request.get(_USER),
            "duration_s": round(time, 4),
        }
        note = request.get(_UPLOAD)
        if note is not None and (note.completed or status >= 400):
            _log_upload(request, note, status, error, common)
        path = masked_path(request)
        fields = {
            "method": request.method,
            "path": path,
            "status": status,
            "bytes_sent": response.body_length,
            **common,
        }
        if status < 400:
            # Polls (status, dashboard, probes) would drown everything else at INFO.
            level = logging.DEBUG if request.method in _READS else logging.INFO
            access_log.log(level, "%s %s %d", request.method, path, status, extra={FIELDS: fields})
            return
        fields.update(error_code=error.error_code, error_message=error.error_message)
        code = error.error_code or "-"
        access_log.warning(
            "%s %s %d %s", request.method, path, status, code, extra={FIELDS: fields}
        )


def masked_path(request: web.BaseRequest) -> str:
    """The path and query, with the value of every credential-named parameter masked."""
    url = request.rel_url
    if not url.query_string:
        return url.raw_path
    pairs = [
        (key, MASK if key.lower() in _SECRET_PARAMS else value) for key, value in url.query.items()
    ]
    return str(url.with_query(pairs))


def _log_upload(
    request: web.BaseRequest,
    note: UploadNote,
    status: int,
    error: _ErrorBody,
    common: dict[str, object],
) -> None:
    if note.completed:
        result = "completed"
    elif status == 409 and error.error_code == "UPLOAD_CANCELLED":
        result = "cancelled"
    else:
        result = "failed"
    received = request.content.total_bytes
    fields = {
        **common,
        "session": note.session_id,
        "protocol": note.protocol,
        "bytes": note.size if note.completed and note.size is not None else received,
        "result": result,
        "error_code": error.error_code,
    }
    level = logging.INFO if result == "completed" else logging.WARNING
    uploads_log.log(level, "upload %s %s", note.session_id, result, extra={FIELDS: fields})


def _error_of(response: web.StreamResponse) -> _ErrorBody:
    body = response.body if isinstance(response, web.Response) else None
    if not isinstance(body, bytes) or len(body) > _ERROR_BODY_LIMIT:
        return _ErrorBody()
    try:
        return _error_decoder.decode(body)
    except msgspec.DecodeError:
        return _ErrorBody()
