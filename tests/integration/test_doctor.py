"""`ingest doctor` as a user runs it: against the real Kafka and MinIO, and against dead ports."""

from __future__ import annotations

import os
import subprocess
import sys

from deploy.stack.process import free_port
from ingest.settings import IngestSettings

SECRET = "doctor-test-secret-that-is-long-enough-1234"


def _doctor(**variables: str) -> subprocess.CompletedProcess[str]:
    ours = ("INGEST_", "KAFKA_", "S3_", "AWS_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "doctor"],
        env={**env, **variables},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _environment(settings: IngestSettings) -> dict[str, str]:
    assert settings.s3_endpoint_url is not None
    assert settings.aws_access_key_id is not None
    assert settings.aws_secret_access_key is not None
    return {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "S3_ENDPOINT_URL": settings.s3_endpoint_url,
        "AWS_ACCESS_KEY_ID": settings.aws_access_key_id,
        "AWS_SECRET_ACCESS_KEY": settings.aws_secret_access_key,
        "INGEST_TOPIC_PREFIX": settings.topic_prefix,
        "S3_BUCKET": settings.s3_bucket,
        "INGEST_JWT_SECRET": SECRET,
    }


def test_against_the_real_stack_everything_is_ok(settings: IngestSettings) -> None:
    done = _doctor(**_environment(settings))
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert f"Kafka at {settings.kafka_bootstrap_servers} answers" in out
    assert "topics: all 6 present" in out
    assert f"S3 at {settings.s3_endpoint_url} answers" in out
    assert f"bucket {settings.s3_bucket} exists" in out
    assert "FAIL" not in out
    assert "nothing wrong found." in out
    # Settings in force are shown, secrets only by their length.
    assert f"INGEST_TOPIC_PREFIX        {settings.topic_prefix}  (environment)" in out
    assert f"INGEST_JWT_SECRET          set, {len(SECRET)} characters" in out
    assert SECRET not in out + done.stderr
    assert settings.aws_secret_access_key
    assert settings.aws_secret_access_key not in out.replace("AWS_SECRET_ACCESS_KEY", "")


def test_a_missing_bucket_and_topics_are_named_with_the_fix(settings: IngestSettings) -> None:
    done = _doctor(
        **{
            **_environment(settings),
            "S3_BUCKET": "no-such-bucket-for-doctor",
            "INGEST_TOPIC_PREFIX": "never-provisioned.",
        }
    )
    assert done.returncode == 1
    assert "FAIL  bucket no-such-bucket-for-doctor does not exist; run `ingest provision`" in (
        done.stdout
    )
    assert "FAIL  topics missing: never-provisioned.uploads" in done.stdout
    assert "2 problems found." in done.stdout


def test_dead_ports_are_reported_without_a_traceback() -> None:
    kafka, s3 = free_port(), free_port()
    done = _doctor(
        KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{kafka}",
        S3_ENDPOINT_URL=f"http://127.0.0.1:{s3}",
        AWS_ACCESS_KEY_ID="someone",
        AWS_SECRET_ACCESS_KEY="something",
    )
    assert done.returncode == 1
    assert f"FAIL  Kafka at 127.0.0.1:{kafka} does not answer" in done.stdout
    assert f"FAIL  S3 at http://127.0.0.1:{s3} does not answer" in done.stdout
    assert "skip  topics" in done.stdout
    assert "warn  JWT" in done.stdout  # no key: a warning, not a failure
    assert "2 problems found." in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    assert done.stderr == ""


def test_a_malformed_setting_is_the_one_problem() -> None:
    done = _doctor(INGEST_PART_SIZE="lots")
    assert done.returncode == 1
    assert "FAIL  settings: INGEST_PART_SIZE='lots' is not a size" in done.stdout
    assert "Traceback" not in done.stderr
