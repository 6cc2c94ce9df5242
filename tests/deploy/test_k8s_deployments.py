"""deploy/k8s Deployments: what each runs, its probes, grace periods, resources, security
context, spread, selectors, disruption budget and autoscaler, consistent with the service."""

from __future__ import annotations

import pytest

from cli.consume import CONSUMER_APPS
from consumers.detection import detection_settings_from_env
from consumers.runtime.settings import consumer_settings_from_env
from tests.deploy.k8s import (
    DEPLOYMENTS,
    MiB,
    container_of,
    deployment_named,
    ingest_settings,
    load_kustomization,
    pod_labels,
    quota_settings,
    selects,
)
from tests.deploy.support import (
    find_objects,
    k8s_objects,
    k8s_quantity,
    one_object,
)


def test_the_deployment_runs_two_replicas_of_ingest_serve() -> None:
    deployment = deployment_named()
    assert deployment["spec"]["replicas"] == 2
    args = container_of()["args"]
    assert args[0] == "serve"
    ports = {p["name"]: p["containerPort"] for p in container_of()["ports"]}
    assert ports == {"http": int(args[args.index("--port") + 1])}


def test_the_quota_deployment_runs_the_quota_consumer() -> None:
    deployment = deployment_named("quota")
    assert deployment["spec"]["replicas"] >= 2, "one member stopping must not stop the snapshots"
    args = container_of("quota")["args"]
    assert args == ["consume", "quota"]
    assert args[1] in CONSUMER_APPS
    ports = {p["name"]: p["containerPort"] for p in container_of("quota")["ports"]}
    assert ports == {"metrics": quota_settings().metrics_port}
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(quota_settings().metrics_port)


def test_the_detection_deployment_runs_the_detection_consumer_with_s3_access_only() -> None:
    args = container_of("detection")["args"]
    assert args == ["consume", "detection"]
    assert args[1] in CONSUMER_APPS
    container = container_of("detection")
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
    ingest = ingest_settings()
    assert (settings.s3_endpoint_url, settings.s3_bucket) == (None, ingest.s3_bucket)
    # One worker per CPU it may use; the scratch directory is the pod's writable volume.
    cpus = k8s_quantity(container["resources"]["limits"]["cpu"])
    assert settings.workers == cpus
    assert str(settings.scratch_dir) == "/tmp"
    pod = deployment_named("detection")["spec"]["template"]["spec"]
    (tmp,) = [v for v in pod["volumes"] if v["name"] == "tmp"]
    scratch = k8s_quantity(tmp["emptyDir"]["sizeLimit"])
    assert scratch >= 2 * settings.workers * ingest.max_file_size, "files downloaded ahead fit"
    drain = consumer_settings_from_env(env).drain_seconds
    assert pod["terminationGracePeriodSeconds"] > drain + 15


def test_quota_probes_ask_the_metrics_port() -> None:
    container = container_of("quota")
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    startup = container["startupProbe"]
    assert startup["httpGet"]["path"] == "/healthz"
    # The port opens once Kafka answered (the producers start first).
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60
    port = quota_settings().metrics_port
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] in ("metrics", port), probe


def test_quota_termination_grace_outlasts_the_drain() -> None:
    spec = deployment_named("quota")["spec"]["template"]["spec"]
    pre_stop = container_of("quota").get("lifecycle", {}).get("preStop", {}).get("exec", {})
    waited = float(pre_stop["command"][1]) if pre_stop else 0.0
    # After the drain, what finished is committed, the member leaves and the producer flushes.
    drain = quota_settings().drain_seconds
    assert spec["terminationGracePeriodSeconds"] > waited + drain + 15


def test_quota_resources_are_bounded() -> None:
    resources = container_of("quota")["resources"]
    assert k8s_quantity(resources["requests"]["memory"]) >= 128 * MiB
    assert k8s_quantity(resources["limits"]["memory"]) >= k8s_quantity(
        resources["requests"]["memory"]
    )
    assert k8s_quantity(resources["requests"]["cpu"]) > 0
    assert k8s_quantity(resources["limits"]["cpu"]) >= k8s_quantity(resources["requests"]["cpu"])


def test_probes() -> None:
    container = container_of()
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    startup = container["startupProbe"]
    assert startup["httpGet"]["path"] == "/healthz"
    # Start-up waits for Kafka and S3 (up to 30s each), so allow at least a minute.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] in ("http", 8080)


def test_termination_grace_outlasts_the_shutdown_grace() -> None:
    spec = deployment_named()["spec"]["template"]["spec"]
    pre_stop = container_of()["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    grace = ingest_settings().shutdown_grace_seconds
    # After preStop and the grace, unfinished uploads are aborted and the producer flushed.
    assert spec["terminationGracePeriodSeconds"] > float(pre_stop[1]) + grace + 15


def test_memory_is_sized_from_the_memory_budget() -> None:
    resources = container_of()["resources"]
    budget = ingest_settings().memory_budget
    assert k8s_quantity(resources["requests"]["memory"]) >= budget + 128 * MiB
    assert k8s_quantity(resources["limits"]["memory"]) >= budget + 256 * MiB
    assert k8s_quantity(resources["limits"]["memory"]) >= k8s_quantity(
        resources["requests"]["memory"]
    )
    assert k8s_quantity(resources["requests"]["cpu"]) > 0, "the HPA scales on CPU requests"


@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_the_pod_runs_non_root_on_a_read_only_filesystem(deployment: str) -> None:
    pod = deployment_named(deployment)["spec"]["template"]["spec"]
    container = container_of(deployment)
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
    template = deployment_named(deployment)["spec"]["template"]
    constraints = template["spec"]["topologySpreadConstraints"]
    keys = {c["topologyKey"] for c in constraints}
    assert keys == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    for constraint in constraints:
        selector = constraint["labelSelector"]["matchLabels"]
        assert selects(selector, template["metadata"]["labels"])
        others = [name for name in DEPLOYMENTS if name != deployment]
        assert not any(selects(selector, pod_labels(other)) for other in others)


@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_the_deployment_selector_matches_its_pods_only(deployment: str) -> None:
    spec = deployment_named(deployment)["spec"]
    assert selects(spec["selector"]["matchLabels"], spec["template"]["metadata"]["labels"])
    others = [name for name in DEPLOYMENTS if name != deployment]
    assert not any(selects(spec["selector"]["matchLabels"], pod_labels(o)) for o in others)


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
    assert selects(selector, pod_labels(deployment))
    others = [name for name in DEPLOYMENTS if name != deployment]
    assert not any(selects(selector, pod_labels(other)) for other in others)
    if "maxUnavailable" in pdb["spec"]:
        assert pdb["spec"]["maxUnavailable"] >= 1
    else:
        assert pdb["spec"]["minAvailable"] < deployment_named(deployment)["spec"]["replicas"]


def test_every_deployment_is_checked_and_applied() -> None:
    # A new Deployment is added to DEPLOYMENTS, so the tests above cover it too.
    assert {obj["metadata"]["name"] for obj in find_objects("Deployment")} == set(DEPLOYMENTS)
    listed = set(load_kustomization()["resources"])
    for path, obj in k8s_objects():
        if obj["kind"] in ("Deployment", "PodDisruptionBudget"):
            assert path.name in listed, f"{path.name} is not in kustomization.yaml"
