"""deploy/k8s settings: pods get only variables the code reads, the quota consumer shares
ingest's defaults, and secrets come from the Secret only."""

from __future__ import annotations

import pytest

from tests.deploy.k8s import (
    DEPLOYMENTS,
    container_of,
    ingest_settings,
    quota_settings,
)
from tests.deploy.support import (
    environment_names_read,
    one_object,
)


@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_pods_get_only_variables_the_code_reads(deployment: str) -> None:
    container = container_of(deployment)
    names = set(one_object("ConfigMap", "ingest-config")["data"])
    names |= {item["name"] for item in container.get("env", [])}
    unknown = names - environment_names_read()
    assert not unknown, f"set but never read: {sorted(unknown)}"


def test_every_deployment_loads_the_shared_configmap() -> None:
    for name in DEPLOYMENTS:
        sources = container_of(name)["envFrom"]
        assert {"configMapRef": {"name": "ingest-config"}} in sources, name


def test_the_configuration_is_valid_for_the_quota_consumer() -> None:
    settings = quota_settings()
    ingest = ingest_settings()
    assert (settings.kafka_bootstrap_servers, settings.topic_prefix) == (
        ingest.kafka_bootstrap_servers,
        ingest.topic_prefix,
    )
    # The kubelet probes the pod's IP: loopback would fail every probe.
    assert settings.metrics_host == "0.0.0.0"
    # Each member names itself after its pod.
    assert settings.instance_id == "quota-7d9c5b8f6-x2x9q"


def test_the_quota_consumer_uses_the_quota_defaults_of_ingest() -> None:
    settings = quota_settings()
    ingest = ingest_settings()
    assert (settings.quota_bytes, settings.quota_uploads, settings.quota_period_days) == (
        ingest.quota_bytes,
        ingest.quota_uploads,
        ingest.quota_period_days,
    )
    # From the shared ConfigMap only: a value in the container would override it there.
    overridden = {item["name"] for item in container_of("quota").get("env", [])}
    assert not overridden & {
        "INGEST_QUOTA_BYTES",
        "INGEST_QUOTA_UPLOADS",
        "INGEST_QUOTA_PERIOD_DAYS",
    }


def test_the_quota_consumer_gets_no_secret() -> None:
    container = container_of("quota")
    assert not [
        item for item in container.get("env", []) if "secretKeyRef" in item.get("valueFrom", {})
    ]
    assert not [source for source in container["envFrom"] if "secretRef" in source]


def test_the_configuration_is_valid_for_ingest() -> None:
    settings = ingest_settings()
    assert settings.jwt_secret
    assert settings.s3_endpoint_url is None, "empty S3_ENDPOINT_URL means AWS S3"


def test_secrets_come_from_the_secret_and_only_there() -> None:
    container = container_of()
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
