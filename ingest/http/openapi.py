"""`GET /openapi.json`: the OpenAPI 3.1 document of the HTTP API, generated at start-up.

Nothing in it is written by hand twice: paths and methods come from the route
table (`ingest.http.routes`, aliases included), each route's `Operation` says
which msgspec types it reads and answers with, and the schemas are
`msgspec.json.schema_components` of those types. A route added to the table
appears in the document; a test fails when one is missing or the document is not
valid OpenAPI. Building the document fails only on a type msgspec cannot
describe, which stops the process at start rather than on the first request.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import msgspec
from aiohttp import web

from schemas.api import ErrorBody

Document = dict[str, Any]
OPENAPI_DOCUMENT = web.AppKey("openapi_document", bytes)

_REF = "#/components/schemas/{name}"

ANY_ROUTE = (400, 417, 500, 503)
"""What any route may answer: a malformed request (aiohttp refuses it before routing), an
`Expect` other than 100-continue, an internal error, the connection cap or a shutdown."""

_PHRASES = {460: "Checksum Mismatch (tus)"}

_PATH_SCHEMAS: dict[str, dict[str, Any]] = {
    # What the server hands out (a UUID4 in hex); any other id is simply unknown (404).
    "session_id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
    # A token's `sub`: any string of 1 to 256 characters.
    "user_id": {"type": "string", "minLength": 1, "maxLength": 256},
}


@dataclass(frozen=True)
class Header:
    name: str
    description: str
    required: bool = False
    schema_type: str = "string"
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Operation:
    """What the document says of one route; every field but `summary` may be left out.

    `body` is a msgspec type for a JSON body, or a media type (`"multipart/form-data"`)
    for a body that is streamed rather than decoded. `responses` maps a status to its
    description and JSON body type (None: no body). `errors` are the statuses the
    route itself may refuse with; each gets the common error body, as do those any
    route may answer (`ANY_ROUTE`, and 401 unless the route is public).
    """

    summary: str
    body: type | str | None = None
    responses: tuple[tuple[int, str, type | None], ...] = ((200, "OK", None),)
    headers: tuple[Header, ...] = ()
    response_headers: tuple[Header, ...] = ()
    query: tuple[Header, ...] = ()
    errors: tuple[int, ...] = ()
    public: bool = False
    media_type: str = "application/json"


@dataclass(frozen=True)
class Entry:
    """One route of the table as the document sees it: a method and its paths."""

    method: str
    path: str
    aliases: tuple[str, ...]
    operation: Operation


def openapi_document(entries: Iterable[Entry], *, version: str) -> Document:
    entries = list(entries)
    types = _types(entries)
    _, components = msgspec.json.schema_components(types, ref_template=_REF)
    paths: dict[str, dict[str, Any]] = {}
    for entry in entries:
        for index, path in enumerate((entry.path, *entry.aliases)):
            operation = _operation(entry, path)
            operation["operationId"] = _operation_id(entry.method, path)
            if index:
                operation["description"] = f"Alias of `{entry.method} {entry.path}`."
            paths.setdefault(path, {})[entry.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Video ingest API",
            "version": version,
            "description": "Upload sessions, streamed and resumable (tus 1.0.0) uploads, quotas.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
        "security": [{"bearer": []}],
    }


def _types(entries: list[Entry]) -> list[Any]:
    found: list[Any] = [ErrorBody]
    for entry in entries:
        candidates = [entry.operation.body, *(kind for _, _, kind in entry.operation.responses)]
        found.extend(c for c in candidates if isinstance(c, type) and c not in found)
    return found


def _ref(kind: type) -> dict[str, str]:
    return {"$ref": _REF.format(name=kind.__name__)}


def _operation(entry: Entry, path: str) -> dict[str, Any]:
    op = entry.operation
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": _PATH_SCHEMAS[name]}
        for name in _path_parameters(path)
    ]
    parameters += [_parameter(h, "header") for h in op.headers]
    parameters += [_parameter(q, "query") for q in op.query]
    responses: dict[str, Any] = {}
    for status, description, kind in op.responses:
        response: dict[str, Any] = {"description": description}
        if kind is not None:
            response["content"] = {op.media_type: {"schema": _ref(kind)}}
        if op.response_headers:
            response["headers"] = {
                h.name: {"description": h.description, "schema": {"type": h.schema_type}}
                for h in op.response_headers
            }
        responses[str(status)] = response
    errors = {*ANY_ROUTE, *op.errors, *(() if op.public else (401,))}
    for status in sorted(errors):
        responses.setdefault(
            str(status),
            {
                "description": _PHRASES.get(status) or HTTPStatus(status).phrase,
                "content": {"application/json": {"schema": _ref(ErrorBody)}},
            },
        )
    result: dict[str, Any] = {"summary": op.summary, "responses": responses}
    if parameters:
        result["parameters"] = parameters
    if isinstance(op.body, type):
        result["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(op.body)}},
        }
    elif op.body is not None:
        schema: dict[str, Any] = {"type": "string", "contentMediaType": "application/octet-stream"}
        if op.body == "multipart/form-data":
            schema = {"type": "object", "properties": {"file": schema}, "required": ["file"]}
        result["requestBody"] = {"required": True, "content": {op.body: {"schema": schema}}}
    if op.public:
        result["security"] = []
    return result


def _parameter(header: Header, where: str) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": header.schema_type}
    if header.choices:
        schema["enum"] = list(header.choices)
    return {
        "name": header.name,
        "in": where,
        "required": header.required,
        "description": header.description,
        "schema": schema,
    }


def _operation_id(method: str, path: str) -> str:
    # Unique because a method and a path are: `put_v1_uploads_session_id`; a trailing
    # slash is spelled out, since `/v1/tus/` and `/v1/tus` are both routes.
    words = "".join(c if c.isalnum() else " " for c in path).split()
    return "_".join([method.lower(), *words, *(["slash"] if path.endswith("/") else [])])


def _path_parameters(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]


async def serve_openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI_DOCUMENT], content_type="application/json")
