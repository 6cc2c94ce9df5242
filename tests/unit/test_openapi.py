"""The OpenAPI document: valid OpenAPI 3.1, every route of the table in it, schemas from msgspec."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from aiohttp import web
from openapi_spec_validator import validate

from ingest.http.routes import ROUTES, add_routes, document
from schemas.api import CreateUploadRequest, ErrorBody, UploadResponse


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return document()


def test_the_document_is_valid_openapi_3_1(doc: dict[str, Any]) -> None:
    validate(doc)
    assert doc["openapi"].startswith("3.1")


def test_every_route_of_the_table_and_its_aliases_is_in_the_document(doc: dict[str, Any]) -> None:
    missing = [
        f"{route.method} {path}"
        for route in ROUTES
        for path in (route.path, *route.aliases)
        if route.method.lower() not in doc["paths"].get(path, {})
    ]
    assert not missing


def test_every_route_the_app_serves_is_in_the_document(doc: dict[str, Any]) -> None:
    app = web.Application()
    add_routes(app)
    served = {(r.method.lower(), r.resource.canonical) for r in app.router.routes() if r.resource}
    documented = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    assert served == documented


def test_schemas_are_msgspecs_own(doc: dict[str, Any]) -> None:
    ref = "#/components/schemas/{name}"
    _, components = msgspec.json.schema_components(
        [CreateUploadRequest, UploadResponse, ErrorBody], ref_template=ref
    )
    for name, schema in components.items():
        assert doc["components"]["schemas"][name] == schema


def test_bodies_and_errors_refer_to_the_types(doc: dict[str, Any]) -> None:
    create = doc["paths"]["/v1/uploads"]["post"]
    body = create["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/CreateUploadRequest"}
    for status in ("400", "401", "413", "429", "500"):
        error = create["responses"][status]["content"]["application/json"]["schema"]
        assert error == {"$ref": "#/components/schemas/ErrorBody"}
    alias = doc["paths"]["/v1/dashboard/upload/initiate"]["post"]
    assert alias["requestBody"] == create["requestBody"]


def test_tus_routes_declare_their_headers(doc: dict[str, Any]) -> None:
    patch = doc["paths"]["/v1/tus/{session_id}"]["patch"]
    names = {p["name"] for p in patch["parameters"] if p["in"] == "header"}
    assert {"Tus-Resumable", "Upload-Offset", "Upload-Checksum"} <= names
    assert "application/offset+octet-stream" in patch["requestBody"]["content"]
    assert "Upload-Offset" in patch["responses"]["204"]["headers"]
    options = doc["paths"]["/v1/tus/"]["options"]
    assert "Tus-Extension" in options["responses"]["204"]["headers"]


def test_open_routes_need_no_token(doc: dict[str, Any]) -> None:
    assert doc["paths"]["/openapi.json"]["get"]["security"] == []
    assert doc["paths"]["/healthz"]["get"]["security"] == []
    assert "security" not in doc["paths"]["/v1/uploads"]["post"]
    assert doc["security"] == [{"bearer": []}]


def test_the_raw_upload_declares_its_integrity_fields_and_refusals(doc: dict[str, Any]) -> None:
    put = doc["paths"]["/v1/uploads/{session_id}"]["put"]
    names = {p["name"] for p in put["parameters"] if p["in"] == "header"}
    assert {"Repr-Digest", "Content-Digest", "Expect"} <= names
    assert {"400", "403", "404", "409", "413", "415", "417", "429"} <= set(put["responses"])
    assert "default" not in put["responses"]
    assert "460" in doc["paths"]["/v1/tus/{session_id}"]["patch"]["responses"]
    assert "460" not in put["responses"]
