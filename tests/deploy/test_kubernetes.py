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

from cli.consume import CONSUMER_APPS
from consumers.detection import detection_settings_from_env
from consumers.fanout.settings import fanout_settings_from_env
from consumers.runtime.settings import ConsumerSettings, consumer_settings_from_env
from ingest.settings import IngestSettings, ingest_settings_from_env
from tests.deploy.routes import LIVE_SAMPLE_PATHS, write_path_samples
from tests.deploy.support import (
    K8S,
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


# Every Deployment, by name: `ingest serve`, and each consumer.
DEPLOYMENTS = ("ingest", "quota", "detection", "fanout")


def _deployment(name: str = "ingest") -> dict[str, Any]:
    return one_object("Deployment", name)


def _container(name: str = "ingest") -> dict[str, Any]:
    (container,) = _deployment(name)["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def _pod_labels(name: str) -> dict[str, str]:
    labels = _deployment(name)["spec"]["template"]["metadata"]["labels"]
    assert isinstance(labels, dict)
    return labels


def _settings() -> IngestSettings:
    """The settings the pods get: ConfigMap plus the Secret template's keys."""
    env = dict(one_object("ConfigMap", "ingest-config")["data"])
    env.update(one_object("Secret", "ingest-secrets")["stringData"])
    return ingest_settings_from_env(env)


def _quota_settings() -> ConsumerSettings:
    """The settings the quota pods get: the ConfigMap, then the container's own values."""
    env = dict(one_object("ConfigMap", "ingest-config")["data"])
    for item in _container("quota").get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        elif item["valueFrom"].get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[item["name"]] = "quota-7d9c5b8f6-x2x9q"
    return consumer_settings_from_env(env)


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
    for name in DEPLOYMENTS:
        assert _container(name)["image"] in image_names, f"kustomize must rewrite {name}'s image"


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


@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_pods_get_only_variables_the_code_reads(deployment: str) -> None:
    container = _container(deployment)
    names = set(one_object("ConfigMap", "ingest-config")["data"])
    names |= {item["name"] for item in container.get("env", [])}
    unknown = names - environment_names_read()
    assert not unknown, f"set but never read: {sorted(unknown)}"


def test_every_deployment_loads_the_shared_configmap() -> None:
    for name in DEPLOYMENTS:
        sources = _container(name)["envFrom"]
        assert {"configMapRef": {"name": "ingest-config"}} in sources, name


def test_the_configuration_is_valid_for_the_quota_consumer() -> None:
    settings = _quota_settings()
    ingest = _settings()
    assert (settings.kafka_bootstrap_servers, settings.topic_prefix) == (
        ingest.kafka_bootstrap_servers,
        ingest.topic_prefix,
    )
    # The kubelet probes the pod's IP: loopback would fail every probe.
    assert settings.metrics_host == "0.0.0.0"
    # Each member names itself after its pod.
    assert settings.instance_id == "quota-7d9c5b8f6-x2x9q"


def test_the_quota_consumer_uses_the_quota_defaults_of_ingest() -> None:
    settings = _quota_settings()
    ingest = _settings()
    assert (settings.quota_bytes, settings.quota_uploads, settings.quota_period_days) == (
        ingest.quota_bytes,
        ingest.quota_uploads,
        ingest.quota_period_days,
    )
    # From the shared ConfigMap only: a value in the container would override it there.
    overridden = {item["name"] for item in _container("quota").get("env", [])}
    assert not overridden & {
        "INGEST_QUOTA_BYTES",
        "INGEST_QUOTA_UPLOADS",
        "INGEST_QUOTA_PERIOD_DAYS",
    }


def test_the_quota_consumer_gets_no_secret() -> None:
    container = _container("quota")
    assert not [
        item for item in container.get("env", []) if "secretKeyRef" in item.get("valueFrom", {})
    ]
    assert not [source for source in container["envFrom"] if "secretRef" in source]


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
    assert args[0] == "serve"
    ports = {p["name"]: p["containerPort"] for p in _container()["ports"]}
    assert ports == {"http": int(args[args.index("--port") + 1])}


def test_the_quota_deployment_runs_the_quota_consumer() -> None:
    deployment = _deployment("quota")
    assert deployment["spec"]["replicas"] >= 2, "one member stopping must not stop the snapshots"
    args = _container("quota")["args"]
    assert args == ["consume", "quota"]
    assert args[1] in CONSUMER_APPS
    ports = {p["name"]: p["containerPort"] for p in _container("quota")["ports"]}
    assert ports == {"metrics": _quota_settings().metrics_port}
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(_quota_settings().metrics_port)


def test_the_detection_deployment_runs_the_detection_consumer_with_s3_access_only() -> None:
    args = _container("detection")["args"]
    assert args == ["consume", "detection"]
    assert args[1] in CONSUMER_APPS
    container = _container("detection")
    env = dict(one_object("ConfigMap", "ingest-config")["data"])
    env.update(one_object("Secret", "ingest-secrets")["stringData"])
    secrets = set()
    for item in container["env"]:
        if "secretKeyRef" in item.get("valueFrom", {}):
            secrets.add(item["name"])
        elif "value" in item:
            env[item["name"]] = item["value"]
    assert secrets == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}, "no JWT secret"
    settings = detection_settings_from_env(env)
    ingest = _settings()
    assert (settings.s3_endpoint_url, settings.s3_bucket) == (None, ingest.s3_bucket)
    # One worker per CPU it may use; the scratch directory is the pod's writable volume.
    cpus = k8s_quantity(container["resources"]["limits"]["cpu"])
    assert settings.workers == cpus
    assert str(settings.scratch_dir) == "/tmp"
    pod = _deployment("detection")["spec"]["template"]["spec"]
    (tmp,) = [v for v in pod["volumes"] if v["name"] == "tmp"]
    scratch = k8s_quantity(tmp["emptyDir"]["sizeLimit"])
    assert scratch >= 2 * settings.workers * ingest.max_file_size, "files downloaded ahead fit"
    drain = consumer_settings_from_env(env).drain_seconds
    assert pod["terminationGracePeriodSeconds"] > drain + 15


def test_quota_probes_ask_the_metrics_port() -> None:
    container = _container("quota")
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    startup = container["startupProbe"]
    assert startup["httpGet"]["path"] == "/healthz"
    # The port opens once Kafka answered (the producers start first).
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60
    port = _quota_settings().metrics_port
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] in ("metrics", port), probe


def test_quota_termination_grace_outlasts_the_drain() -> None:
    spec = _deployment("quota")["spec"]["template"]["spec"]
    pre_stop = _container("quota").get("lifecycle", {}).get("preStop", {}).get("exec", {})
    waited = float(pre_stop["command"][1]) if pre_stop else 0.0
    # After the drain, what finished is committed, the member leaves and the producer flushes.
    drain = _quota_settings().drain_seconds
    assert spec["terminationGracePeriodSeconds"] > waited + drain + 15


def test_quota_resources_are_bounded() -> None:
    resources = _container("quota")["resources"]
    assert k8s_quantity(resources["requests"]["memory"]) >= 128 * MiB
    assert k8s_quantity(resources["limits"]["memory"]) >= k8s_quantity(
        resources["requests"]["memory"]
    )
    assert k8s_quantity(resources["requests"]["cpu"]) > 0
    assert k8s_quantity(resources["limits"]["cpu"]) >= k8s_quantity(resources["requests"]["cpu"])


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


@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_the_pod_runs_non_root_on_a_read_only_filesystem(deployment: str) -> None:
    pod = _deployment(deployment)["spec"]["template"]["spec"]
    container = _container(deployment)
    assert pod["securityContext"]["runAsNonRoot"] is True
    # The image's user (USER 10001:10001 in the Dockerfile), like every Deployment.
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["runAsGroup"] == 10001
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_replicas_spread_over_nodes_and_zones(deployment: str) -> None:
    template = _deployment(deployment)["spec"]["template"]
    constraints = template["spec"]["topologySpreadConstraints"]
    keys = {c["topologyKey"] for c in constraints}
    assert keys == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    for constraint in constraints:
        selector = constraint["labelSelector"]["matchLabels"]
        assert _selects(selector, template["metadata"]["labels"])
        others = [name for name in DEPLOYMENTS if name != deployment]
        assert not any(_selects(selector, _pod_labels(other)) for other in others)


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
        # Consumers serve no requests: a Service selecting them would send traffic there.
        assert not _selects(selector, _pod_labels("quota"))
        assert not _selects(selector, _pod_labels("detection"))
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in container_ports


@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_the_deployment_selector_matches_its_pods_only(deployment: str) -> None:
    spec = _deployment(deployment)["spec"]
    assert _selects(spec["selector"]["matchLabels"], spec["template"]["metadata"]["labels"])
    others = [name for name in DEPLOYMENTS if name != deployment]
    assert not any(_selects(spec["selector"]["matchLabels"], _pod_labels(o)) for o in others)


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


@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_the_disruption_budget_covers_the_deployment_and_allows_drains(deployment: str) -> None:
    pdb = one_object("PodDisruptionBudget", deployment)
    selector = pdb["spec"]["selector"]["matchLabels"]
    assert _selects(selector, _pod_labels(deployment))
    others = [name for name in DEPLOYMENTS if name != deployment]
    assert not any(_selects(selector, _pod_labels(other)) for other in others)
    if "maxUnavailable" in pdb["spec"]:
        assert pdb["spec"]["maxUnavailable"] >= 1
    else:
        assert pdb["spec"]["minAvailable"] < _deployment(deployment)["spec"]["replicas"]


def test_every_deployment_is_checked_and_applied() -> None:
    # A new Deployment is added to DEPLOYMENTS, so the tests above cover it too.
    assert {obj["metadata"]["name"] for obj in find_objects("Deployment")} == set(DEPLOYMENTS)
    listed = set(_kustomization()["resources"])
    for path, obj in k8s_objects():
        if obj["kind"] in ("Deployment", "PodDisruptionBudget"):
            assert path.name in listed, f"{path.name} is not in kustomization.yaml"


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
    sent_to_live = [s for s in write_path_samples() if routed(s)]
    assert sent_to_live == [], "write-path routes sent to the live service"
    # The live Service selects the live-service pods, and only those.
    selector = one_object("Service", "live")["spec"]["selector"]
    assert _selects(selector, _pod_labels("fanout"))
    assert not _selects(selector, _pod_labels("ingest"))


def test_the_live_service_deployment_serves_where_its_service_points() -> None:
    container = _container("fanout")
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
    ingest = _settings()
    assert settings.jwt_secret == ingest.jwt_secret
    # The results it answers are read where the detection consumer writes them.
    assert (settings.s3.endpoint_url, settings.s3_bucket) == (None, ingest.s3_bucket)
    refs = [
        item["valueFrom"]["secretKeyRef"]["key"] for item in container["env"] if "valueFrom" in item
    ]
    assert refs == ["INGEST_JWT_SECRET", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"], (
        "the key it verifies tokens with and the S3 keys, nothing more"
    )


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
