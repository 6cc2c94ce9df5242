"""The route table: every canonical route with its dashboard aliases, bound to one handler.

Each route also carries its `Operation`, from which `GET /openapi.json` is
generated (`ingest.http.openapi`), so the table is the one place a route is declared.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.metadata import version

import msgspec
from aiohttp import web

from ingest.http import handlers, operations, resumable, resumable_docs, tus
from ingest.http.openapi import OPENAPI_DOCUMENT, Entry, Operation, openapi_document, serve_openapi
from ingest.http.openapi_docs import (
    CANCEL,
    CREATE,
    GET_QUOTA,
    HEALTHZ,
    LIST,
    METRICS,
    OPENAPI,
    READYZ,
    SET_QUOTA,
    STATUS,
    TUS_CREATE,
    TUS_DELETE,
    TUS_HEAD,
    TUS_OPTIONS,
    TUS_OVERRIDE,
    TUS_PATCH,
    UPLOAD_MULTIPART,
    UPLOAD_RAW,
    VALIDATE,
    VALIDATE_BY_BODY,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ExpectHandler = Callable[[web.Request], Awaitable[web.StreamResponse | None]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    doc: Operation
    aliases: tuple[str, ...] = ()
    expect: ExpectHandler | None = None


# Read at import: the metadata lookup touches the file system, which the event loop must not.
API_VERSION = version("video-ingest")

SESSION = "{session_id}"
TUS = tus.PREFIX

ROUTES: tuple[Route, ...] = (
    Route(
        "POST", "/v1/uploads", handlers.create_upload, CREATE, ("/v1/dashboard/upload/initiate",)
    ),
    Route("GET", "/v1/uploads", handlers.list_sessions, LIST, ("/v1/dashboard/upload/sessions",)),
    Route(
        "PUT",
        f"/v1/uploads/{SESSION}",
        handlers.upload_file,
        UPLOAD_RAW,
        (f"/v1/dashboard/upload/{SESSION}",),
        expect=handlers.expect_upload,
    ),
    Route(
        "POST",
        f"/v1/uploads/{SESSION}",
        handlers.upload_file,
        UPLOAD_MULTIPART,
        (f"/v1/dashboard/upload/{SESSION}",),
        expect=handlers.expect_upload,
    ),
    Route(
        "GET",
        f"/v1/uploads/{SESSION}",
        handlers.get_status,
        STATUS,
        (f"/v1/dashboard/upload/{SESSION}/status",),
    ),
    Route(
        "DELETE",
        f"/v1/uploads/{SESSION}",
        handlers.cancel_upload,
        CANCEL,
        (f"/v1/dashboard/upload/{SESSION}", f"/v1/dashboard/upload/sessions/{SESSION}"),
    ),
    Route("POST", f"/v1/uploads/{SESSION}/validate", handlers.validate_session, VALIDATE),
    Route("POST", "/v1/dashboard/upload/validate", handlers.validate_session, VALIDATE_BY_BODY),
    Route("GET", "/v1/quota", handlers.get_quota, GET_QUOTA, ("/v1/dashboard/upload/quota",)),
    Route("PUT", "/v1/admin/quotas/{user_id}", handlers.set_quota, SET_QUOTA),
    Route("OPTIONS", TUS, tus.options, TUS_OPTIONS, ("/v1/tus", f"{TUS}{SESSION}")),
    Route("POST", TUS, tus.create, TUS_CREATE, ("/v1/tus",)),
    Route("HEAD", f"{TUS}{SESSION}", tus.head, TUS_HEAD),
    Route("PATCH", f"{TUS}{SESSION}", tus.patch, TUS_PATCH, expect=tus.expect_patch),
    Route("DELETE", f"{TUS}{SESSION}", tus.terminate, TUS_DELETE),
    Route("POST", f"{TUS}{SESSION}", tus.override, TUS_OVERRIDE),
    Route("OPTIONS", resumable.PREFIX, resumable.options, resumable_docs.OPTIONS),
    Route("POST", resumable.PREFIX, resumable.create, resumable_docs.CREATE),
    Route("HEAD", f"{resumable.PREFIX}/{SESSION}", resumable.head, resumable_docs.HEAD),
    Route("PATCH", f"{resumable.PREFIX}/{SESSION}", resumable.append, resumable_docs.APPEND),
    Route("DELETE", f"{resumable.PREFIX}/{SESSION}", resumable.cancel, resumable_docs.CANCEL),
    Route("GET", "/healthz", operations.healthz, HEALTHZ),
    Route("GET", "/readyz", operations.readyz, READYZ),
    Route("GET", "/metrics", operations.metrics, METRICS),
    Route("GET", "/openapi.json", serve_openapi, OPENAPI),
)


def document(routes: tuple[Route, ...] = ROUTES) -> dict[str, object]:
    """The OpenAPI document of `routes`."""
    return openapi_document(
        (Entry(r.method, r.path, r.aliases, r.doc) for r in routes),
        version=API_VERSION,
    )


def add_routes(app: web.Application, routes: tuple[Route, ...] = ROUTES) -> None:
    # Encoded once: the document only changes with the code.
    app[OPENAPI_DOCUMENT] = msgspec.json.encode(document(routes))
    for route in routes:
        for path in (route.path, *route.aliases):
            if route.expect is not None:
                app.router.add_route(route.method, path, route.handler, expect_handler=route.expect)
            else:
                app.router.add_route(route.method, path, route.handler)
