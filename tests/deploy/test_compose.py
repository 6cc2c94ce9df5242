"""deploy/compose.yaml: valid Compose, pinned images, health checks, and settings ingest reads."""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

import pytest

from cli.consume import CONSUMER_APPS
from cli.main import main as ingest_cli
from consumers.detection import detection_settings_from_env
from consumers.fanout.settings import FanoutSettings, fanout_settings_from_env
from consumers.runtime.settings import ConsumerSettings, consumer_settings_from_env
from ingest.settings import IngestSettings, ingest_settings_from_env
from tests.deploy.support import (
    COMPOSE_FILE,
    DEPLOY,
    DOCKERFILE,
    NGINX_CONF,
    MissingVariable,
    compose_duration,
    environment_names_read,
    load_yaml_documents,
    service_environment,
)

# What an operator exports before `docker compose up` (only the required variable).
OPERATOR_VARIABLES = {"INGEST_JWT_SECRET": "a-test-secret-of-at-least-32-bytes-long"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    (document,) = load_yaml_documents(COMPOSE_FILE)
    assert isinstance(document, dict)
    return document


def built_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run this repository's image."""
    return {name: s for name, s in compose["services"].items() if "build" in s}


def ingest_settings(compose: dict[str, Any]) -> IngestSettings:
    return ingest_settings_from_env(
        service_environment(compose["services"]["ingest"], OPERATOR_VARIABLES)
    )


def quota_settings(compose: dict[str, Any]) -> ConsumerSettings:
    return consumer_settings_from_env(
        service_environment(compose["services"]["quota"], OPERATOR_VARIABLES)
    )


def test_compose_follows_the_compose_specification_schema(compose: dict[str, Any]) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    pytest.importorskip(
        "check_jsonschema", reason="add check-jsonschema (it bundles the Compose schema)"
    )
    schema_file = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text(encoding="utf-8"))
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(compose)
    ]
    assert errors == []


def test_the_schema_check_would_catch_a_mistake(compose: dict[str, Any]) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    pytest.importorskip("check_jsonschema")
    schema_file = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text(encoding="utf-8"))
    broken = json.loads(json.dumps(compose))
    broken["services"]["ingest"]["depends_on"]["provision"]["condition"] = "service_finished"
    broken["services"]["proxy"]["healthcheck"]["intervall"] = "10s"
    assert len(list(jsonschema.validators.validator_for(schema)(schema).iter_errors(broken))) >= 2


def test_only_the_processes_that_exist_run(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {
        "kafka",
        "minio",
        "provision",
        "ingest",
        "quota",
        "detection",
        "fanout",
        "proxy",
    }


@pytest.mark.parametrize("service", ["provision", "ingest", "quota", "detection", "fanout"])
def test_built_services_run_an_existing_ingest_subcommand(
    compose: dict[str, Any], service: str, capsys: pytest.CaptureFixture[str]
) -> None:
    command = compose["services"][service]["command"]
    assert isinstance(command, list), "use the exec form"
    with pytest.raises(SystemExit) as exit_info:
        ingest_cli([*command, "--help"])
    assert exit_info.value.code == 0, capsys.readouterr().err


def test_the_quota_service_runs_the_quota_consumer(compose: dict[str, Any]) -> None:
    command = compose["services"]["quota"]["command"]
    assert command == ["consume", "quota"]
    # `--help` above stops before the name is looked up: check it is a registered app.
    assert command[1] in CONSUMER_APPS


def test_the_detection_service_runs_the_detection_consumer_on_the_bucket_ingest_fills(
    compose: dict[str, Any],
) -> None:
    service = compose["services"]["detection"]
    assert service["command"] == ["consume", "detection"]
    assert service["command"][1] in CONSUMER_APPS
    env = service_environment(service, OPERATOR_VARIABLES)
    detection = detection_settings_from_env(env)
    consumer = consumer_settings_from_env(env)
    ingest = ingest_settings(compose)
    assert (detection.s3_endpoint_url, detection.s3_bucket) == (
        ingest.s3_endpoint_url,
        ingest.s3_bucket,
    )
    assert (consumer.kafka_bootstrap_servers, consumer.topic_prefix) == (
        ingest.kafka_bootstrap_servers,
        ingest.topic_prefix,
    )
    assert detection.model is None
    assert "INGEST_JWT_SECRET" not in env, "it serves no request"
    # Ready once in its group; stopped only after its drain.
    urls = re.findall(r"http://[^']+", " ".join(service["healthcheck"]["test"]))
    assert urls == [f"http://127.0.0.1:{consumer.metrics_port}/readyz"]
    assert compose_duration(service["stop_grace_period"]) > consumer.drain_seconds + 15
    depends = {dep: spec["condition"] for dep, spec in service["depends_on"].items()}
    assert depends["minio"] == depends["kafka"] == "service_healthy"


def test_built_services_use_the_dockerfile(compose: dict[str, Any]) -> None:
    services = built_services(compose)
    assert set(services) == {"provision", "ingest", "quota", "detection", "fanout"}
    for service in services.values():
        build = service["build"]
        assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
    assert len({s["image"] for s in services.values()}) == 1, "one image for every process"


def test_images_are_pinned(compose: dict[str, Any]) -> None:
    images = {name: s["image"] for name, s in compose["services"].items() if "build" not in s}
    assert re.fullmatch(r"apache/kafka:3\.9\.\d+", images["kafka"])
    assert re.fullmatch(r"minio/minio:RELEASE\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ", images["minio"])
    assert re.fullmatch(r"nginx:\d+\.\d+\.\d+(-alpine)?", images["proxy"])
    proxy_version = tuple(int(n) for n in re.findall(r"\d+", images["proxy"])[:3])
    assert proxy_version >= (1, 27, 3), "`resolve` on upstream servers needs nginx 1.27.3"


def test_kafka_runs_in_kraft_mode(compose: dict[str, Any]) -> None:
    env = service_environment(compose["services"]["kafka"], {})
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    node = env["KAFKA_NODE_ID"]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{node}@")
    assert "CONTROLLER" in env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", env["CLUSTER_ID"]), "a base64 UUID"
    assert "ZOOKEEPER" not in " ".join(env).upper()
    # The service reaches the broker on the name and port it advertises.
    internal = env["KAFKA_ADVERTISED_LISTENERS"].split(",")[0].split("://")[1]
    ingest_env = service_environment(compose["services"]["ingest"], OPERATOR_VARIABLES)
    assert ingest_env["KAFKA_BOOTSTRAP_SERVERS"] == internal


def test_every_long_running_service_has_a_health_check(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        check = service.get("healthcheck", {})
        if name == "provision":
            assert check.get("disable") is True, "one-shot: its exit status is what counts"
            assert service.get("restart") == "no"
            continue
        assert check.get("test"), f"{name} has no health check"
        assert not check.get("disable"), f"{name} disables its health check"


def test_start_order_waits_for_health_and_provisioning(compose: dict[str, Any]) -> None:
    services = compose["services"]

    def conditions(name: str) -> dict[str, str]:
        return {dep: spec["condition"] for dep, spec in services[name]["depends_on"].items()}

    assert conditions("provision") == {"kafka": "service_healthy", "minio": "service_healthy"}
    assert conditions("ingest")["provision"] == "service_completed_successfully"
    assert conditions("ingest")["kafka"] == conditions("ingest")["minio"] == "service_healthy"
    assert conditions("proxy") == {"ingest": "service_healthy", "fanout": "service_healthy"}
    # The consumers need the topics, not S3 and not ingest.
    for consumer in ("quota", "fanout"):
        assert conditions(consumer) == {
            "kafka": "service_healthy",
            "provision": "service_completed_successfully",
        }


def test_the_jwt_secret_is_required_without_a_default(compose: dict[str, Any]) -> None:
    raw = compose["services"]["ingest"]["environment"]["INGEST_JWT_SECRET"]
    assert re.fullmatch(r"\$\{INGEST_JWT_SECRET:\?[^}]+\}", raw)
    with pytest.raises(MissingVariable):
        service_environment(compose["services"]["ingest"], {})
    with pytest.raises(MissingVariable):
        service_environment(compose["services"]["ingest"], {"INGEST_JWT_SECRET": ""})


def test_built_services_set_only_variables_the_code_reads(compose: dict[str, Any]) -> None:
    known = environment_names_read()
    for name, service in built_services(compose).items():
        unknown = set(service_environment(service, OPERATOR_VARIABLES)) - known
        assert not unknown, f"{name} sets variables nothing reads: {sorted(unknown)}"


def test_the_environment_is_valid_for_ingest(compose: dict[str, Any]) -> None:
    env = service_environment(compose["services"]["ingest"], OPERATOR_VARIABLES)
    settings = ingest_settings_from_env(env)
    assert settings.jwt_secret == OPERATOR_VARIABLES["INGEST_JWT_SECRET"]
    assert settings.kafka_bootstrap_servers == "kafka:9092"
    assert settings.s3_endpoint_url == "http://minio:9000"
    provision = ingest_settings_from_env(
        service_environment(compose["services"]["provision"], OPERATOR_VARIABLES)
    )
    # Provisioning creates exactly what the service then uses.
    assert (provision.topic_prefix, provision.s3_bucket, provision.kafka_bootstrap_servers) == (
        settings.topic_prefix,
        settings.s3_bucket,
        settings.kafka_bootstrap_servers,
    )


def test_the_environment_is_valid_for_the_quota_consumer(compose: dict[str, Any]) -> None:
    settings = quota_settings(compose)
    ingest = ingest_settings(compose)
    # The topics ingest writes, on the broker it writes to.
    assert (settings.kafka_bootstrap_servers, settings.topic_prefix) == (
        ingest.kafka_bootstrap_servers,
        ingest.topic_prefix,
    )
    # In a container: loopback would keep the health check's and a scraper's requests out.
    assert settings.metrics_host == "0.0.0.0"


def test_the_quota_consumer_uses_the_quota_defaults_of_ingest(compose: dict[str, Any]) -> None:
    settings = quota_settings(compose)
    ingest = ingest_settings(compose)
    assert (settings.quota_bytes, settings.quota_uploads, settings.quota_period_days) == (
        ingest.quota_bytes,
        ingest.quota_uploads,
        ingest.quota_period_days,
    )
    # From the shared block, so that changing one changes both.
    shared = compose["x-ingest-environment"]
    for name in ("INGEST_QUOTA_BYTES", "INGEST_QUOTA_UPLOADS", "INGEST_QUOTA_PERIOD_DAYS"):
        assert name in shared
        for service in ("ingest", "quota"):
            assert compose["services"][service]["environment"][name] == shared[name]


def test_the_quota_consumer_gets_no_secret_it_does_not_use(compose: dict[str, Any]) -> None:
    env = service_environment(compose["services"]["quota"], OPERATOR_VARIABLES)
    assert "INGEST_JWT_SECRET" not in env
    # Compose starts it without the operator's variables too.
    service_environment(compose["services"]["quota"], {})


def test_the_quota_health_check_asks_its_metrics_port_for_readiness(
    compose: dict[str, Any],
) -> None:
    service = compose["services"]["quota"]
    check = service["healthcheck"]
    assert check["test"][0] == "CMD"
    urls = re.findall(r"http://[^'\"\s]+", " ".join(check["test"]))
    assert urls == [f"http://127.0.0.1:{quota_settings(compose).metrics_port}/readyz"]
    # Joining the group and loading the snapshots take a while after Kafka is up.
    assert compose_duration(check["start_period"]) >= 30


def test_the_quota_consumer_gets_longer_than_its_drain_to_stop(compose: dict[str, Any]) -> None:
    service = compose["services"]["quota"]
    settings = quota_settings(compose)
    assert "INGEST_SHUTDOWN_GRACE" in service["environment"], "the default drain is not ingest's"
    # After the drain: the commit, leaving the group and the producer's flush.
    assert compose_duration(service["stop_grace_period"]) > settings.drain_seconds + 10


def test_the_quota_consumer_publishes_no_port(compose: dict[str, Any]) -> None:
    service = compose["services"]["quota"]
    assert "ports" not in service
    assert [str(p) for p in service.get("expose", [])] == [
        str(quota_settings(compose).metrics_port)
    ]


def test_minio_credentials_match_what_ingest_uses(compose: dict[str, Any]) -> None:
    for variables in ({}, {"MINIO_ROOT_USER": "someone", "MINIO_ROOT_PASSWORD": "a-long-password"}):
        minio = service_environment(compose["services"]["minio"], variables)
        ingest = service_environment(
            compose["services"]["ingest"], {**OPERATOR_VARIABLES, **variables}
        )
        assert ingest["AWS_ACCESS_KEY_ID"] == minio["MINIO_ROOT_USER"]
        assert ingest["AWS_SECRET_ACCESS_KEY"] == minio["MINIO_ROOT_PASSWORD"]


def test_ingest_gets_longer_than_its_shutdown_grace_to_stop(compose: dict[str, Any]) -> None:
    service = compose["services"]["ingest"]
    settings = ingest_settings_from_env(service_environment(service, OPERATOR_VARIABLES))
    assert compose_duration(service["stop_grace_period"]) > settings.shutdown_grace_seconds + 10


def test_the_proxy_fronts_ingest_on_8080(compose: dict[str, Any]) -> None:
    proxy = compose["services"]["proxy"]
    assert any(str(p).endswith("8080:8080") for p in proxy["ports"])
    mounts = [str(v).split(":") for v in proxy["volumes"]]
    assert any(
        (DEPLOY / source).resolve() == NGINX_CONF and target.startswith("/etc/nginx/conf.d/")
        for source, target, *_ in mounts
    )
    assert "ports" not in compose["services"]["ingest"], "reach ingest through the proxy only"


def test_backing_services_listen_on_localhost_only(compose: dict[str, Any]) -> None:
    for name in ("kafka", "minio"):
        for port in compose["services"][name].get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


def fanout_settings(compose: dict[str, Any]) -> FanoutSettings:
    return fanout_settings_from_env(
        service_environment(compose["services"]["fanout"], OPERATOR_VARIABLES)
    )


def test_the_fanout_service_runs_the_live_service_where_the_proxy_sends_it(
    compose: dict[str, Any],
) -> None:
    service = compose["services"]["fanout"]
    command = service["command"]
    assert command[:2] == ["consume", "fanout"]
    port = command[command.index("--port") + 1]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert service["expose"] == [port]
    nginx = NGINX_CONF.read_text(encoding="utf-8")
    assert f"server fanout:{port} resolve;" in nginx
    urls = re.findall(r"http://127\.0\.0\.1:\d+/readyz", " ".join(service["healthcheck"]["test"]))
    assert urls == [f"http://127.0.0.1:{port}/readyz"]


def test_the_environment_is_valid_for_the_live_service(compose: dict[str, Any]) -> None:
    settings = fanout_settings(compose)
    ingest = ingest_settings(compose)
    # The tokens ingest accepts, the topics ingest writes, on the broker it writes to.
    assert settings.jwt_secret == ingest.jwt_secret
    assert (settings.kafka_bootstrap_servers, settings.topic_prefix) == (
        ingest.kafka_bootstrap_servers,
        ingest.topic_prefix,
    )
    # The results it answers are read where the detection consumer writes them.
    assert (settings.s3, settings.s3_bucket) == (ingest.s3_endpoint(), ingest.s3_bucket)
    assert (settings.max_connections, settings.max_connections_per_user) == (1000, 5)
    with pytest.raises(MissingVariable):
        service_environment(compose["services"]["fanout"], {})
