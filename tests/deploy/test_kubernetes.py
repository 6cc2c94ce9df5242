"""deploy/k8s: objects valid against the published Kubernetes schemas, and consistent.

Consistent with each other (selectors, Services, ports, the Secret's keys) and
with the service (the settings it reads, its shutdown grace, its memory budget,
its routes).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest

from ingest.settings import IngestSettings, ingest_settings_from_env
from tests.deploy.support import (
    K8S,
    LIVE_SAMPLE_PATHS,
    environment_names_read,
    find_objects,
    k8s_objects,
    k8s_quantity,
    load_yaml_documents,
    one_object,
)

MiB = 1024 * 1024
# Oldest Kubernetes the manifests are written for, and the newest schema bundled.
OLDEST_SUPPORTED = "1.29"
# Custom resources: no published schema in the Kubernetes bundle; checked below instead.
CUSTOM_KINDS = {("kafka.strimzi.io/v1beta2", "KafkaTopic")}


def _kustomization() -> dict[str, Any]:
    (document,) = load_yaml_documents(K8S / "kustomization.yaml")
    assert isinstance(document, dict)
    return document


def _deployment() -> dict[str, Any]:
    return one_object("Deployment", "ingest")


def _container() -> dict[str, Any]:
    (container,) = _deployment()["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def _settings() -> IngestSettings:
    """The settings the pods get: ConfigMap plus the Secret template's keys."""
    env = dict(one_object("ConfigMap", "ingest-config")["data"])
    env.update(one_object("Secret", "ingest-secrets")["stringData"])
    return ingest_settings_from_env(env)


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


# --- Schemas and the kustomization ------------------------------------------------------


def _schema_cases() -> list[Any]:
    cases = []
    for path, obj in k8s_objects(include_template=True):
        if (obj["apiVersion"], obj["kind"]) in CUSTOM_KINDS:
            continue
        label = f"{path.name}:{obj['kind']}/{obj['metadata']['name']}"
        cases.append(pytest.param(obj, id=label))
    return cases


@pytest.mark.parametrize("obj", _schema_cases())
def test_objects_follow_the_published_kubernetes_schemas(obj: dict[str, Any]) -> None:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="add kubernetes-validate to the dev dependencies"
    )
    for version in (OLDEST_SUPPORTED, kubernetes_validate.latest_version()):
        # strict: unknown fields (a typo, a field in the wrong place) are errors too.
        kubernetes_validate.validate(obj, version, strict=True)


def test_the_schema_check_would_catch_a_mistake() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    broken = _deployment()
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, OLDEST_SUPPORTED, strict=True)


def test_the_kustomization_lists_every_manifest_but_the_secret_template() -> None:
    kustomization = _kustomization()
    listed = kustomization["resources"]
    on_disk = {
        p.name
        for p in K8S.glob("*.yaml")
        if p.name != "kustomization.yaml" and not p.name.endswith(".example.yaml")
    }
    assert sorted(listed) == sorted(on_disk)
    assert "secret.example.yaml" not in listed, "applying it would overwrite the real Secret"
    (namespace,) = find_objects("Namespace")
    assert namespace["metadata"]["name"] == kustomization["namespace"]
    image_names = {image["name"] for image in kustomization["images"]}
    assert _container()["image"] in image_names, "kustomize must rewrite the image"


def test_kustomize_builds_the_manifests() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    built = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=False
    )
    assert built.returncode == 0, built.stderr
    assert "registry.example.com/video-ingest:" in built.stdout


# --- Settings ---------------------------------------------------------------------------


def test_pods_get_only_variables_the_code_reads() -> None:
    container = _container()
    names = set(one_object("ConfigMap", "ingest-config")["data"])
    names |= {item["name"] for item in container.get("env", [])}
    unknown = names - environment_names_read()
    assert not unknown, f"set but never read: {sorted(unknown)}"


def test_the_configuration_is_valid_for_ingest() -> None:
    settings = _settings()
    assert settings.jwt_secret
    assert settings.s3_endpoint_url is None, "empty S3_ENDPOINT_URL means AWS S3"


def test_secrets_come_from_the_secret_and_only_there() -> None:
    container = _container()
    secret = one_object("Secret", "ingest-secrets")
    refs = {
        item["name"]: item["valueFrom"]["secretKeyRef"]
        for item in container["env"]
        if "secretKeyRef" in item.get("valueFrom", {})
    }
    assert set(refs) == {"INGEST_JWT_SECRET", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert {ref["name"] for ref in refs.values()} == {"ingest-secrets"}
    assert {ref["key"] for ref in refs.values()} == set(secret["stringData"])
    assert all("REPLACE-ME" in value for value in secret["stringData"].values())
    config = one_object("ConfigMap", "ingest-config")["data"]
    assert not set(config) & set(refs), "a secret in the ConfigMap"


# --- The Deployment ------------------------------------------------------------------------


def test_the_deployment_runs_two_replicas_of_ingest_serve() -> None:
    deployment = _deployment()
    assert deployment["spec"]["replicas"] == 2
    args = _container()["args"]
    assert args[0] == "serve", "only `ingest serve` runs today"
    ports = {p["name"]: p["containerPort"] for p in _container()["ports"]}
    assert ports == {"http": int(args[args.index("--port") + 1])}


def test_probes() -> None:
    container = _container()
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    startup = container["startupProbe"]
    assert startup["httpGet"]["path"] == "/healthz"
    # Start-up waits for Kafka and S3 (up to 30s each), so allow at least a minute.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] in ("http", 8080)


def test_termination_grace_outlasts_the_shutdown_grace() -> None:
    spec = _deployment()["spec"]["template"]["spec"]
    pre_stop = _container()["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    grace = _settings().shutdown_grace_seconds
    # After preStop and the grace, unfinished uploads are aborted and the producer flushed.
    assert spec["terminationGracePeriodSeconds"] > float(pre_stop[1]) + grace + 15


def test_memory_is_sized_from_the_memory_budget() -> None:
    resources = _container()["resources"]
    budget = _settings().memory_budget
    assert k8s_quantity(resources["requests"]["memory"]) >= budget + 128 * MiB
    assert k8s_quantity(resources["limits"]["memory"]) >= budget + 256 * MiB
    assert k8s_quantity(resources["limits"]["memory"]) >= k8s_quantity(
        resources["requests"]["memory"]
    )
    assert k8s_quantity(resources["requests"]["cpu"]) > 0, "the HPA scales on CPU requests"


def test_the_pod_runs_non_root_on_a_read_only_filesystem() -> None:
    pod = _deployment()["spec"]["template"]["spec"]
    container = _container()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


def test_replicas_spread_over_nodes_and_zones() -> None:
    template = _deployment()["spec"]["template"]
    constraints = template["spec"]["topologySpreadConstraints"]
    keys = {c["topologyKey"] for c in constraints}
    assert keys == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    for constraint in constraints:
        assert _selects(constraint["labelSelector"]["matchLabels"], template["metadata"]["labels"])


# --- Service, HPA, PDB, Ingress --------------------------------------------------------------


def _workload_pod_labels() -> list[dict[str, str]]:
    return [d["spec"]["template"]["metadata"]["labels"] for d in find_objects("Deployment")]


def test_services_select_pods_and_name_their_ports() -> None:
    container_ports = {p["name"] for p in _container()["ports"]}
    for service in find_objects("Service"):
        selector = service["spec"]["selector"]
        assert any(_selects(selector, labels) for labels in _workload_pod_labels()), (
            f"Service {service['metadata']['name']} selects no pods"
        )
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in container_ports


def test_the_deployment_selector_matches_its_pods() -> None:
    spec = _deployment()["spec"]
    assert _selects(spec["selector"]["matchLabels"], spec["template"]["metadata"]["labels"])


def test_the_autoscaler_scales_ingest_on_cpu() -> None:
    hpa = one_object("HorizontalPodAutoscaler", "ingest")
    assert hpa["apiVersion"] == "autoscaling/v2"
    spec = hpa["spec"]
    assert (spec["minReplicas"], spec["maxReplicas"]) == (2, 10)
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "ingest",
    }
    (metric,) = spec["metrics"]
    assert metric["type"] == "Resource"
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"


def test_the_disruption_budget_covers_ingest_and_allows_drains() -> None:
    pdb = one_object("PodDisruptionBudget", "ingest")
    assert _selects(pdb["spec"]["selector"]["matchLabels"], _workload_pod_labels()[0])
    if "maxUnavailable" in pdb["spec"]:
        assert pdb["spec"]["maxUnavailable"] >= 1
    else:
        assert pdb["spec"]["minAvailable"] < _deployment()["spec"]["replicas"]


def test_the_ingress_streams_uploads() -> None:
    ingress = one_object("Ingress", "ingest")
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "off"
    assert annotations["nginx.ingress.kubernetes.io/proxy-body-size"] == "0"
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 600
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"]) >= 600


def _backends(ingress: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path["path"], path["pathType"], path["backend"]["service"])
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    ]


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
    assert not routed("/v1/uploads/0b9d3c1e"), "a write-path route sent to the live service"
    assert not routed("/v1/dashboard/upload/initiate")
    # Today the live Service selects the ingest pods.
    assert _selects(one_object("Service", "live")["spec"]["selector"], _workload_pod_labels()[0])


# --- Strimzi topics --------------------------------------------------------------------------


def test_strimzi_topics_equal_the_topic_specs() -> None:
    from schemas.topics import DEFAULT_PREFIX, Topics

    topics = find_objects("KafkaTopic")
    assert all(t["apiVersion"] == "kafka.strimzi.io/v1beta2" for t in topics)
    declared = {
        t["spec"].get("topicName", t["metadata"]["name"]): (
            t["spec"]["partitions"],
            {k: str(v) for k, v in t["spec"]["config"].items()},
        )
        for t in topics
    }
    expected = {
        name: (spec.partitions, dict(spec.config)) for name, spec in Topics(DEFAULT_PREFIX).specs()
    }
    assert declared == expected
    assert len(topics) == len(expected), "a topic declared twice"
    assert one_object("ConfigMap", "ingest-config")["data"]["INGEST_TOPIC_PREFIX"] == DEFAULT_PREFIX


def test_strimzi_topics_name_their_cluster_and_replicas() -> None:
    for topic in find_objects("KafkaTopic"):
        assert topic["metadata"]["labels"]["strimzi.io/cluster"]
        assert isinstance(topic["spec"]["replicas"], int)
        assert topic["spec"]["replicas"] >= 1
        assert set(topic["spec"]) <= {"topicName", "partitions", "replicas", "config"}


def test_every_manifest_file_is_a_kubernetes_object_list() -> None:
    for path, obj in k8s_objects(include_template=True):
        assert {"apiVersion", "kind", "metadata"} <= set(obj), path
        assert obj["metadata"].get("name"), path
