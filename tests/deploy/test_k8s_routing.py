"""deploy/k8s routing: Services select the serving pods, the Ingresses stream uploads, and every
route of the live service (read from its own router) goes to it, every other route to ingest."""

from __future__ import annotations

import re
from typing import Any

from consumers.fanout.settings import fanout_settings_from_env
from tests.deploy.k8s import (
    container_of,
    ingest_settings,
    pod_labels,
    selects,
)
from tests.deploy.routes import LIVE_SAMPLE_PATHS, write_path_samples
from tests.deploy.support import (
    find_objects,
    one_object,
)


def _workload_pod_labels() -> list[dict[str, str]]:
    return [d["spec"]["template"]["metadata"]["labels"] for d in find_objects("Deployment")]


def _backends(ingress: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path["path"], path["pathType"], path["backend"]["service"])
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    ]


def test_services_select_pods_and_name_their_ports() -> None:
    container_ports = {p["name"] for p in container_of()["ports"]}
    for service in find_objects("Service"):
        selector = service["spec"]["selector"]
        assert any(selects(selector, labels) for labels in _workload_pod_labels()), (
            f"Service {service['metadata']['name']} selects no pods"
        )
        # Consumers serve no requests: a Service selecting them would send traffic there.
        assert not selects(selector, pod_labels("quota"))
        assert not selects(selector, pod_labels("detection"))
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in container_ports


def test_the_ingress_streams_uploads() -> None:
    ingress = one_object("Ingress", "ingest")
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "off"
    assert annotations["nginx.ingress.kubernetes.io/proxy-body-size"] == "0"
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 600
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"]) >= 600


def test_ingress_backends_exist() -> None:
    services = {s["metadata"]["name"]: s for s in find_objects("Service")}
    for ingress in find_objects("Ingress"):
        for path, _, backend in _backends(ingress):
            service = services.get(backend["name"])
            assert service is not None, f"{path}: no Service {backend['name']}"
            port_names = {p["name"] for p in service["spec"]["ports"]}
            assert backend["port"]["name"] in port_names


def test_the_live_routes_are_one_backend_change() -> None:
    live = one_object("Ingress", "ingest-live")
    backends = _backends(live)
    assert {backend["name"] for _, _, backend in backends} == {"live"}

    def routed(sample: str) -> bool:
        for path, path_type, _ in backends:
            if path_type == "Prefix" and (
                sample == path.rstrip("/") or sample.startswith(path.rstrip("/") + "/")
            ):
                return True
            if path_type == "ImplementationSpecific" and re.match(path, sample):
                return True
        return False

    assert [s for s in LIVE_SAMPLE_PATHS if not routed(s)] == []
    sent_to_live = [s for s in write_path_samples() if routed(s)]
    assert sent_to_live == [], "write-path routes sent to the live service"
    # The live Service selects the live-service pods, and only those.
    selector = one_object("Service", "live")["spec"]["selector"]
    assert selects(selector, pod_labels("fanout"))
    assert not selects(selector, pod_labels("ingest"))


def test_the_live_service_deployment_serves_where_its_service_points() -> None:
    container = container_of("fanout")
    args = container["args"]
    assert args[:2] == ["consume", "fanout"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": int(args[args.index("--port") + 1])}
    (service_port,) = one_object("Service", "live")["spec"]["ports"]
    assert service_port["targetPort"] == "http"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] == "http"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    env = dict(one_object("ConfigMap", "ingest-config")["data"])
    env.update(one_object("Secret", "ingest-secrets")["stringData"])
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
    settings = fanout_settings_from_env(env)
    ingest = ingest_settings()
    assert settings.jwt_secret == ingest.jwt_secret
    # The results it answers are read where the detection consumer writes them.
    assert (settings.s3.endpoint_url, settings.s3_bucket) == (None, ingest.s3_bucket)
    refs = [
        item["valueFrom"]["secretKeyRef"]["key"] for item in container["env"] if "valueFrom" in item
    ]
    assert refs == ["INGEST_JWT_SECRET", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"], (
        "the key it verifies tokens with and the S3 keys, nothing more"
    )
