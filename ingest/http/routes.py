"""The route table: every canonical route with its dashboard aliases, bound to one handler."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from ingest.http import handlers, operations, tus

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ExpectHandler = Callable[[web.Request], Awaitable[web.StreamResponse | None]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    aliases: tuple[str, ...] = ()
    expect: ExpectHandler | None = None


SESSION = "{session_id}"
TUS = tus.PREFIX

ROUTES: tuple[Route, ...] = (
    Route("POST", "/v1/uploads", handlers.create_upload, ("/v1/dashboard/upload/initiate",)),
    Route("GET", "/v1/uploads", handlers.list_sessions, ("/v1/dashboard/upload/sessions",)),
    Route(
        "PUT",
        f"/v1/uploads/{SESSION}",
        handlers.upload_file,
        (f"/v1/dashboard/upload/{SESSION}",),
        expect=handlers.expect_upload,
    ),
    Route(
        "POST",
        f"/v1/uploads/{SESSION}",
        handlers.upload_file,
        (f"/v1/dashboard/upload/{SESSION}",),
        expect=handlers.expect_upload,
    ),
    Route(
        "GET",
        f"/v1/uploads/{SESSION}",
        handlers.get_status,
        (f"/v1/dashboard/upload/{SESSION}/status",),
    ),
    Route(
        "DELETE",
        f"/v1/uploads/{SESSION}",
        handlers.cancel_upload,
        (f"/v1/dashboard/upload/{SESSION}", f"/v1/dashboard/upload/sessions/{SESSION}"),
    ),
    Route("POST", f"/v1/uploads/{SESSION}/validate", handlers.validate_session),
    Route("POST", "/v1/dashboard/upload/validate", handlers.validate_session),
    Route("GET", "/v1/quota", handlers.get_quota, ("/v1/dashboard/upload/quota",)),
    Route("PUT", "/v1/admin/quotas/{user_id}", handlers.set_quota),
    Route("OPTIONS", TUS, tus.options, ("/v1/tus", f"{TUS}{SESSION}")),
    Route("POST", TUS, tus.create, ("/v1/tus",)),
    Route("HEAD", f"{TUS}{SESSION}", tus.head),
    Route("PATCH", f"{TUS}{SESSION}", tus.patch, expect=tus.expect_patch),
    Route("DELETE", f"{TUS}{SESSION}", tus.terminate),
    Route("POST", f"{TUS}{SESSION}", tus.override),
    Route("GET", "/healthz", operations.healthz),
    Route("GET", "/readyz", operations.readyz),
    Route("GET", "/metrics", operations.metrics),
)


def add_routes(app: web.Application, routes: tuple[Route, ...] = ROUTES) -> None:
    for route in routes:
        for path in (route.path, *route.aliases):
            if route.expect is not None:
                app.router.add_route(route.method, path, route.handler, expect_handler=route.expect)
            else:
                app.router.add_route(route.method, path, route.handler)
