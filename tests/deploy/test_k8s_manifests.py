"""deploy/k8s as a whole: every object valid against the published Kubernetes schemas, the
kustomization listing every manifest, and the Strimzi topics equal to the topic specs."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest

from tests.deploy.k8s import (
    DEPLOYMENTS,
    container_of,
    deployment_named,
    load_kustomization,
)
from tests.deploy.support import (
    K8S,
    find_objects,
    k8s_objects,
    one_object,
)

# Oldest Kubernetes the manifests are written for, and the newest schema bundled.
OLDEST_SUPPORTED = "1.29"


# Custom resources: no published schema in the Kubernetes bundle; checked below instead.
CUSTOM_KINDS = {("kafka.strimzi.io/v1beta2", "KafkaTopic")}


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
    broken = deployment_named()
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, OLDEST_SUPPORTED, strict=True)


def test_the_kustomization_lists_every_manifest_but_the_secret_template() -> None:
    kustomization = load_kustomization()
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
        assert container_of(name)["image"] in image_names, f"kustomize must rewrite {name}'s image"


def test_kustomize_builds_the_manifests() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    built = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=False
    )
    assert built.returncode == 0, built.stderr
    assert "registry.example.com/video-ingest:" in built.stdout


def test_every_manifest_file_is_a_kubernetes_object_list() -> None:
    for path, obj in k8s_objects(include_template=True):
        assert {"apiVersion", "kind", "metadata"} <= set(obj), path
        assert obj["metadata"].get("name"), path


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
