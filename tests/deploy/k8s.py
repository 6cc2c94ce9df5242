"""Readers of the objects under deploy/k8s that the Kubernetes tests share.

The Deployments by name, their one container, their pod labels, whether a
selector selects a set of labels, and the settings the pods get (the
ConfigMap plus the Secret template's keys, or the quota container's own
values), parsed by the code the processes run.
"""

from __future__ import annotations

from typing import Any

from consumers.runtime.settings import ConsumerSettings, consumer_settings_from_env
from ingest.settings import IngestSettings, ingest_settings_from_env
from tests.deploy.support import (
    K8S,
    load_yaml_documents,
    one_object,
)

MiB = 1024 * 1024


def load_kustomization() -> dict[str, Any]:
    (document,) = load_yaml_documents(K8S / "kustomization.yaml")
    assert isinstance(document, dict)
    return document


# Every Deployment, by name: `ingest serve`, and each consumer.
DEPLOYMENTS = ("ingest", "quota", "detection", "fanout")


def deployment_named(name: str = "ingest") -> dict[str, Any]:
    return one_object("Deployment", name)


def container_of(name: str = "ingest") -> dict[str, Any]:
    (container,) = deployment_named(name)["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def pod_labels(name: str) -> dict[str, str]:
    labels = deployment_named(name)["spec"]["template"]["metadata"]["labels"]
    assert isinstance(labels, dict)
    return labels


def ingest_settings() -> IngestSettings:
    """The settings the pods get: ConfigMap plus the Secret template's keys."""
    env = dict(one_object("ConfigMap", "ingest-config")["data"])
    env.update(one_object("Secret", "ingest-secrets")["stringData"])
    return ingest_settings_from_env(env)


def quota_settings() -> ConsumerSettings:
    """The settings the quota pods get: the ConfigMap, then the container's own values."""
    env = dict(one_object("ConfigMap", "ingest-config")["data"])
    for item in container_of("quota").get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        elif item["valueFrom"].get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[item["name"]] = "quota-7d9c5b8f6-x2x9q"
    return consumer_settings_from_env(env)


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())
