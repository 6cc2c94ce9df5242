"""Settings from the environment: sizes, durations, lists, JWT keys, and clear errors."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from infra.env import GiB, MiB, SettingsError, TiB
from ingest.settings import ingest_settings_from_env


def test_defaults_work_with_the_local_stack() -> None:
    settings = ingest_settings_from_env({})
    assert settings.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert settings.s3_endpoint_url == "http://127.0.0.1:9000"
    assert settings.max_file_size == 500 * MiB
    assert settings.part_size == 8 * MiB
    assert settings.allowed_formats == ("mp4", "mov", "avi", "mkv", "webm")
    assert settings.session_ttl_seconds == 3600
    assert settings.quota_bytes == 10 * GiB


def test_sizes_durations_and_lists_parse() -> None:
    settings = ingest_settings_from_env(
        {
            "INGEST_MAX_FILE_SIZE": "5TiB",
            "INGEST_PART_SIZE": "16MiB",
            "INGEST_SESSION_TTL": "90m",
            "INGEST_ALLOWED_FORMATS": "MP4, .webm",
            "S3_ENDPOINT_URL": "",
            "INGEST_HEADER_TIMEOUT": "5s",
            "INGEST_KEEPALIVE_TIMEOUT": "1m",
            "INGEST_MAX_CONNECTIONS": "100",
        }
    )
    assert (settings.header_timeout_seconds, settings.keepalive_timeout_seconds) == (5, 60)
    assert settings.max_connections == 100
    assert settings.max_file_size == 5 * TiB
    assert settings.part_size == 16 * MiB
    assert settings.session_ttl_seconds == 5400
    assert settings.allowed_formats == ("mp4", "webm")
    assert settings.s3_endpoint_url is None


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("INGEST_MAX_FILE_SIZE", "lots", "INGEST_MAX_FILE_SIZE"),
        ("INGEST_MAX_FILE_SIZE", "6TiB", "5 TiB"),
        ("INGEST_PART_SIZE", "1MiB", "5 MiB"),
        ("INGEST_SESSION_TTL", "soon", "INGEST_SESSION_TTL"),
        ("INGEST_PORT", "http", "INGEST_PORT"),
        ("INGEST_ALLOWED_FORMATS", " , ", "INGEST_ALLOWED_FORMATS"),
        ("INGEST_MAX_CONNECTIONS", "0", "INGEST_MAX_CONNECTIONS"),
        ("INGEST_HEADER_TIMEOUT", "0", "INGEST_HEADER_TIMEOUT"),
        ("INGEST_KEEPALIVE_TIMEOUT", "later", "INGEST_KEEPALIVE_TIMEOUT"),
        ("INGEST_JOURNAL_MAX_BYTES", "100KiB", "INGEST_JOURNAL_MAX_BYTES"),
        ("INGEST_JOURNAL_MAX_AGE", "0", "INGEST_JOURNAL_MAX_AGE"),
        ("INGEST_KAFKA_SEND_TIMEOUT", "20s", "INGEST_KAFKA_SEND_TIMEOUT"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        ingest_settings_from_env({name: value})


def test_the_journal_lives_under_the_data_dir_unless_told_otherwise() -> None:
    settings = ingest_settings_from_env({"INGEST_DATA_DIR": "/var/lib/ingest"})
    assert str(settings.journal_path) == "/var/lib/ingest/journal"
    assert settings.journal_max_bytes == GiB
    assert settings.journal_max_age_seconds == 24 * 3600
    settings = ingest_settings_from_env(
        {
            "INGEST_JOURNAL_DIR": "/mnt/journal",
            "INGEST_JOURNAL_MAX_BYTES": "64MiB",
            "INGEST_JOURNAL_MAX_AGE": "2h",
            "INGEST_KAFKA_SEND_TIMEOUT": "500ms",
        }
    )
    assert str(settings.journal_path) == "/mnt/journal"
    assert (settings.journal_max_bytes, settings.journal_max_age_seconds) == (64 * MiB, 7200)
    assert settings.kafka_send_timeout_seconds == 0.5


def test_local_credentials_are_assumed_only_for_the_local_endpoint() -> None:
    assert ingest_settings_from_env({}).aws_access_key_id == "minioadmin"
    on_aws = ingest_settings_from_env({"S3_ENDPOINT_URL": ""})
    assert on_aws.aws_access_key_id is None  # botocore's credential chain decides
    assert on_aws.aws_secret_access_key is None
    explicit = ingest_settings_from_env({"S3_ENDPOINT_URL": "", "AWS_ACCESS_KEY_ID": "AKIA"})
    assert explicit.aws_access_key_id == "AKIA"


# --- the JWT key, judged at start --------------------------------------------------------


def _public_pem(bits: int = 2048) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def test_a_good_secret_or_public_key_is_kept() -> None:
    secret = "s" * 32
    assert ingest_settings_from_env({"INGEST_JWT_SECRET": secret}).jwt_secret == secret
    pem = _public_pem()
    assert ingest_settings_from_env({"INGEST_JWT_PUBLIC_KEY": pem}).jwt_public_key == pem


def test_no_key_is_left_to_the_command() -> None:
    settings = ingest_settings_from_env({})
    assert settings.jwt_secret is None
    assert settings.jwt_public_key is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"INGEST_JWT_SECRET": "too-short"}, r"^INGEST_JWT_SECRET: the HS256 secret is 9 bytes"),
        (
            {"INGEST_JWT_PUBLIC_KEY": "ssh-rsa AAAAB3NzaC1yc2E"},
            r"^INGEST_JWT_PUBLIC_KEY: the RS256 public key is not a PEM public key",
        ),
        (
            {"INGEST_JWT_SECRET": "s" * 40, "INGEST_JWT_PUBLIC_KEY": "irrelevant"},
            r"^INGEST_JWT_SECRET and INGEST_JWT_PUBLIC_KEY: both .* set exactly one",
        ),
    ],
)
def test_a_key_the_verifier_would_refuse_fails_start_up_naming_the_variable(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        ingest_settings_from_env(env)


def test_a_short_rsa_key_fails_start_up() -> None:
    with pytest.raises(SettingsError, match=r"INGEST_JWT_PUBLIC_KEY: .* at least 2048"):
        ingest_settings_from_env({"INGEST_JWT_PUBLIC_KEY": _public_pem(1024)})
