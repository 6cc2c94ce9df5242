"""Which process serves which route, read from the applications themselves.

A proxy in front of a split deployment (deploy/nginx, the Ingresses of
deploy/k8s) sends every route of the live service (`ingest consume fanout`)
to it and everything else to `ingest serve`. The live routes are read from
the router of the live service's own application (`fanout_app`) and the
write path's from ingest's route table (`ingest.http.routes.ROUTES`), so a
route added to either is checked against the proxies without anyone listing
it here. Each route becomes a sample request path with its placeholders
filled in.
"""

from __future__ import annotations

import re
from pathlib import Path

from consumers.fanout.app import fanout_app
from consumers.fanout.service import LiveService
from consumers.fanout.settings import FanoutSettings
from infra.objects import LocalDocuments
from ingest.http.routes import ROUTES
from tests.unit.fanout_fakes import FakeRanges, hub

_PLACEHOLDER = re.compile(r"\{[^}]+\}")
_SAMPLE_ID = "0b9d3c1e"

PER_PROCESS_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
"""Answered by every process about itself (probes and scrapes reach each one directly);
through a proxy they belong to ingest."""

SPEC_LIVE_PATHS = (
    "/ws/upload-progress",
    "/ws/upload-progress/0b9d3c1e",
    "/v1/uploads/0b9d3c1e/progress",
    "/v1/dashboard/upload/progress/0b9d3c1e",
    "/dashboard",
    "/dashboard/videos/v-123/results",
    "/v1/videos/v-123/results",
)
"""What SPEC section 3 (and the results page) gives the live service, as request paths."""


def _live_service_routes() -> tuple[str, ...]:
    """Every path pattern the live service's application routes, the per-process ones aside."""
    settings = FanoutSettings(jwt_secret="x" * 32)
    the_hub = hub()
    live = LiveService(settings, the_hub, FakeRanges(), settings.verifier(), the_hub.metrics, [])
    # Nothing is read from the documents: the application is only built, never served.
    app = fanout_app(live, LocalDocuments(Path("/nonexistent")))
    paths = {route.resource.canonical for route in app.router.routes() if route.resource}
    return tuple(sorted(paths - PER_PROCESS_ROUTES))


def _pattern(route: str) -> re.Pattern[str]:
    """`/v1/uploads/{id}/progress` -> a pattern taking any one path segment for `{id}`."""
    return re.compile("[^/]+".join(re.escape(part) for part in _PLACEHOLDER.split(route)))


def sample_path(route: str) -> str:
    return _PLACEHOLDER.sub(_SAMPLE_ID, route)


LIVE_SERVICE_ROUTES = _live_service_routes()
LIVE_ROUTES = tuple(_pattern(route) for route in LIVE_SERVICE_ROUTES)
LIVE_SAMPLE_PATHS = tuple(sample_path(route) for route in LIVE_SERVICE_ROUTES)


def is_live_route(path: str) -> bool:
    return any(pattern.fullmatch(path) for pattern in LIVE_ROUTES)


def write_path_samples() -> list[str]:
    """A request path for every route of `ingest serve` (placeholders filled in).

    Routes the live service serves are left out even if ingest serves them too
    (as `ingest dev` does): a proxy sends those to the live service.
    """
    paths = {sample_path(path) for route in ROUTES for path in (route.path, *route.aliases)} | {
        "/v1/tus/",
        f"/v1/tus/{_SAMPLE_ID}",
    }
    return sorted(path for path in paths if not is_live_route(path))
