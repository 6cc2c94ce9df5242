"""deploy/k8s/sweep.yaml: the scheduled `ingest sweep`, consistent with the pods and the code.

Its schema is checked with every other object (test_kubernetes.py); here: it
runs the real subcommand with the pods' settings, cannot pile up, and the
settings keep the sweep's promise (nothing left past the TTL plus one interval).
"""

from __future__ import annotations

from typing import Any

from cli.main import _parser
from ingest.settings import ingest_settings_from_env
from tests.deploy.support import environment_names_read, k8s_objects, one_object


def _job() -> dict[str, Any]:
    return one_object("CronJob", "sweep")


def _pod() -> dict[str, Any]:
    pod: dict[str, Any] = _job()["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return pod


def _container() -> dict[str, Any]:
    (container,) = _pod()["containers"]
    assert isinstance(container, dict)
    return container


def test_the_job_runs_the_sweep_subcommand() -> None:
    args = _container()["args"]
    assert args[0] == "sweep"
    parsed = _parser().parse_args(args)
    assert parsed.run.__name__ == "_sweep"


def test_passes_never_overlap_or_outlive_their_period() -> None:
    spec = _job()["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    minutes = int(spec["schedule"].split()[0].removeprefix("*/"))
    assert spec["jobTemplate"]["spec"]["activeDeadlineSeconds"] < minutes * 60
    assert _pod()["restartPolicy"] == "Never"


def test_the_job_gets_the_pods_settings_and_only_the_s3_keys() -> None:
    container = _container()
    assert {"configMapRef": {"name": "ingest-config"}} in container["envFrom"]
    secrets = {
        item["name"]: item["valueFrom"]["secretKeyRef"]
        for item in container["env"]
        if "secretKeyRef" in item.get("valueFrom", {})
    }
    assert set(secrets) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert {ref["name"] for ref in secrets.values()} == {"ingest-secrets"}
    names = set(one_object("ConfigMap", "ingest-config")["data"]) | set(secrets)
    assert not names - environment_names_read()


def test_the_job_runs_non_root_on_a_read_only_filesystem() -> None:
    assert _pod()["securityContext"]["runAsNonRoot"] is True
    context = _container()["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]


def test_the_settings_keep_the_sweeps_bound() -> None:
    settings = ingest_settings_from_env(dict(one_object("ConfigMap", "ingest-config")["data"]))
    # A dead instance is known well before the TTL, and passes come often enough that
    # nothing outlives its session's TTL by more than one interval.
    assert settings.instance_dead_after_seconds < settings.session_ttl_seconds
    assert 0 < settings.sweep_interval_seconds < settings.session_ttl_seconds
    assert settings.heartbeat_interval_seconds * 3 <= settings.instance_dead_after_seconds


def test_the_job_is_applied() -> None:
    (document,) = [obj for path, obj in k8s_objects() if obj["kind"] == "CronJob"]
    assert document["metadata"]["name"] == "sweep"
    kustomization = (
        next(p for p, _ in k8s_objects() if p.name == "sweep.yaml").parent / "kustomization.yaml"
    ).read_text(encoding="utf-8")
    assert "- sweep.yaml" in kustomization
