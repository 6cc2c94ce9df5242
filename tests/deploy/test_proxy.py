"""deploy/nginx/ingest.conf: streamed uploads, long timeouts, live routes in one place."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ingest.http.routes import ROUTES
from tests.deploy.routes import (
    LIVE_SAMPLE_PATHS,
    LIVE_SERVICE_ROUTES,
    PER_PROCESS_ROUTES,
    SPEC_LIVE_PATHS,
    is_live_route,
    write_path_samples,
)
from tests.deploy.support import (
    COMPOSE_FILE,
    NGINX_CONF,
    Directive,
    load_yaml_documents,
    nginx_location_for,
    nginx_seconds,
    parse_nginx,
    proxy_upstream,
    service_environment,
)

WRITE_PATH_UPSTREAM = "ingest"
LIVE_UPSTREAM = "live"


def _server(tree: list[Directive]) -> Directive:
    servers = [d for d in tree if d.name == "server"]
    assert len(servers) == 1, "one server block"
    return servers[0]


def _upstreams(tree: list[Directive]) -> dict[str, list[Directive]]:
    found: dict[str, list[Directive]] = {}
    for directive in tree:
        if directive.name == "upstream":
            found.setdefault(directive.args[0], []).append(directive)
    return found


def proxy_problems(text: str) -> list[str]:
    """What is wrong with the proxy configuration (empty when nothing is)."""
    tree = parse_nginx(text)
    server = _server(tree)
    problems: list[str] = []
    expected = {
        "proxy_request_buffering": ["off"],
        "client_max_body_size": ["0"],
        "proxy_http_version": ["1.1"],
    }
    for name, value in expected.items():
        if server.value(name) != value:
            problems.append(f"server: {name} is {server.value(name)}, not {value}")
    for location in server.children("location"):
        where = " ".join(location.args)
        for name, value in expected.items():
            if location.value(name) not in (None, value):
                problems.append(f"location {where} sets {name} {location.value(name)}")
        if location.children("proxy_set_header"):
            # nginx would then drop every proxy_set_header of the server level here.
            problems.append(f"location {where} sets proxy_set_header")
        upstream = proxy_upstream(location)
        if upstream not in (None, WRITE_PATH_UPSTREAM, LIVE_UPSTREAM):
            problems.append(f"location {where} passes to {upstream}")
    upstreams = _upstreams(tree)
    for name in (WRITE_PATH_UPSTREAM, LIVE_UPSTREAM):
        if len(upstreams.get(name, [])) != 1:
            problems.append(f"upstream {name} is not defined exactly once")
    for path in LIVE_SAMPLE_PATHS:
        upstream = proxy_upstream(nginx_location_for(server, path))
        if upstream != LIVE_UPSTREAM:
            problems.append(f"{path} goes to {upstream}, not the live upstream")
    for path in write_path_samples():
        upstream = proxy_upstream(nginx_location_for(server, path))
        if upstream != WRITE_PATH_UPSTREAM:
            problems.append(f"{path} goes to {upstream}, not ingest")
    return problems


@pytest.fixture(scope="module")
def conf_text() -> str:
    return NGINX_CONF.read_text(encoding="utf-8")


def test_the_proxy_configuration_has_no_problems(conf_text: str) -> None:
    assert proxy_problems(conf_text) == []


def test_the_live_service_serves_what_the_spec_gives_it() -> None:
    assert [path for path in SPEC_LIVE_PATHS if not is_live_route(path)] == []
    assert "/dashboard/static/{name}" in LIVE_SERVICE_ROUTES
    assert not is_live_route("/v1/uploads/0b9d3c1e")
    assert not is_live_route("/v1/dashboard/upload/0b9d3c1e/status")


def test_only_the_probes_are_left_out_of_the_live_routes_and_ingest_answers_them() -> None:
    # Each process answers them about itself; through the proxy they are ingest's.
    assert {route.path for route in ROUTES} >= PER_PROCESS_ROUTES
    assert not PER_PROCESS_ROUTES & set(LIVE_SERVICE_ROUTES)


def test_the_write_path_samples_cover_the_route_table() -> None:
    samples = write_path_samples()
    assert "/v1/uploads/0b9d3c1e" in samples
    assert "/v1/dashboard/upload/initiate" in samples
    assert "/readyz" in samples


def test_the_live_service_is_one_upstream_change(conf_text: str) -> None:
    tree = parse_nginx(conf_text)
    server = _server(tree)
    live_locations = [
        loc for loc in server.children("location") if proxy_upstream(loc) == LIVE_UPSTREAM
    ]
    # Every live route is served by a location passing to `live`, none to anything else...
    assert {id(nginx_location_for(server, p)) for p in LIVE_SAMPLE_PATHS} <= {
        id(loc) for loc in live_locations
    }
    # ... and `live` names exactly one server, the live service (`ingest consume fanout`).
    (live,) = _upstreams(tree)[LIVE_UPSTREAM]
    assert len(live.children("server")) == 1
    (compose,) = load_yaml_documents(COMPOSE_FILE)
    host = live.children("server")[0].args[0].partition(":")[0]
    assert compose["services"][host]["command"][:2] == ["consume", "fanout"]


def test_upstream_servers_are_compose_services(conf_text: str) -> None:
    (compose,) = load_yaml_documents(COMPOSE_FILE)
    for upstream in _upstreams(parse_nginx(conf_text)).values():
        for server in upstream[0].children("server"):
            host, _, port = server.args[0].partition(":")
            assert host in compose["services"], f"upstream server {host} is not a compose service"
            assert compose["services"][host]["expose"] == [port]


def test_timeouts_outlast_the_service_timeouts(conf_text: str) -> None:
    server = _server(parse_nginx(conf_text))
    (compose,) = load_yaml_documents(COMPOSE_FILE)
    env = service_environment(compose["services"]["ingest"], {"INGEST_JWT_SECRET": "x" * 32})
    idle = nginx_seconds(env.get("INGEST_BODY_IDLE_TIMEOUT", "60s"))
    # The service, not the proxy, must notice an idle client first (it reports TIMEOUT).
    assert nginx_seconds(server.value("client_body_timeout")[0]) > idle  # type: ignore[index]
    for name in ("proxy_read_timeout", "proxy_send_timeout", "send_timeout"):
        value = server.value(name)
        assert value is not None, f"{name} is not set"
        assert nginx_seconds(value[0]) >= 600, f"{name} is too short for large uploads"


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            lambda t: t.replace("proxy_request_buffering off;", "proxy_request_buffering on;"),
            "proxy_request_buffering",
        ),
        (
            lambda t: t.replace("client_max_body_size 0;", "client_max_body_size 10m;"),
            "client_max_body_size",
        ),
        (lambda t: t.replace("proxy_http_version 1.1;", ""), "proxy_http_version"),
        (
            lambda t: t.replace(
                "location ^~ /ws/ {", "location ^~ /ws/ {\n proxy_set_header X-A b;"
            ),
            "proxy_set_header",
        ),
        (
            lambda t: t.replace(
                "location ^~ /ws/ {", "location ^~ /ws/ {\n proxy_request_buffering on;"
            ),
            "/ws/ sets proxy_request_buffering",
        ),
        (
            lambda t: t.replace("location = /dashboard {", "location = /dashboard-old {"),
            "/dashboard goes to",
        ),
        (
            lambda t: t.replace("^/v1/uploads/[^/]+/progress$", "^/v1/upload/[^/]+/progress$"),
            "/progress goes to",
        ),
        (
            lambda t: t.replace("location ^~ /v1/videos/ {", "location ^~ /v1/video/ {"),
            "/v1/videos/0b9d3c1e/results goes to",
        ),
        (
            lambda t: t.replace("location ^~ /dashboard/ {", "location ^~ /dashboard/videos/ {"),
            "/dashboard/static/0b9d3c1e goes to",
        ),
    ],
)
def test_a_broken_proxy_configuration_is_caught(
    conf_text: str, change: Callable[[str], str], problem: str
) -> None:
    broken = change(conf_text)
    assert broken != conf_text, "the mutation did not apply: update this test"
    assert any(problem in p for p in proxy_problems(broken)), proxy_problems(broken)


def test_the_location_matcher_follows_nginx_rules() -> None:
    (server,) = parse_nginx(
        """server {
            location / { proxy_pass http://a; }
            location = /x { proxy_pass http://b; }
            location ^~ /p/ { proxy_pass http://c; }
            location ~ ^/p/.*/r$ { proxy_pass http://d; }
            location ~ ^/q/[^/]+/r$ { proxy_pass http://e; }
        }"""
    )
    assert proxy_upstream(nginx_location_for(server, "/x")) == "b"
    assert proxy_upstream(nginx_location_for(server, "/x/y")) == "a"
    assert proxy_upstream(nginx_location_for(server, "/p/1/r")) == "c"  # ^~ stops regexes
    assert proxy_upstream(nginx_location_for(server, "/q/1/r")) == "e"  # a regex beats a prefix
    assert proxy_upstream(nginx_location_for(server, "/q/1/r/s")) == "a"
