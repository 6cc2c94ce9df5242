"""`ingest serve` and `ingest dev` refuse to start on a JWT key that cannot verify tokens safely.

Each case runs the real command in a subprocess: it must exit with status 1 and
one line on stderr naming the variable (or file) and the problem, before it
listens on anything and without a traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from deploy.stack.process import free_port


def start(command: str, data_dir: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    # Nothing of the caller's own configuration may decide the outcome.
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("INGEST_", "KAFKA_", "S3_"))
    }
    env.update(INGEST_DATA_DIR=str(data_dir), **variables)
    return subprocess.run(
        [sys.executable, "-m", "cli.main", command, "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        # A command that does not refuse would serve until killed: fail, do not hang.
        timeout=60,
        check=False,
    )


def private_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def assert_refused(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"ingest: {message}"), result.stderr
    assert "running" not in result.stdout


@pytest.mark.parametrize("command", ["serve", "dev"])
@pytest.mark.parametrize(
    ("variables", "message"),
    [
        (
            {"INGEST_JWT_SECRET": "change-me"},
            "INGEST_JWT_SECRET: the HS256 secret is 9 bytes; at least 32",
        ),
        (
            {"INGEST_JWT_PUBLIC_KEY": "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"},
            "INGEST_JWT_PUBLIC_KEY: the RS256 public key is not a PEM public key",
        ),
        (
            {"INGEST_JWT_SECRET": "s" * 48, "INGEST_JWT_PUBLIC_KEY": "x"},
            "INGEST_JWT_SECRET and INGEST_JWT_PUBLIC_KEY: both",
        ),
    ],
)
def test_a_misconfigured_key_stops_the_process_at_start(
    command: str, variables: dict[str, str], message: str, tmp_path: Path
) -> None:
    assert_refused(start(command, tmp_path, **variables), message)


def test_a_private_key_in_place_of_the_public_key_is_refused_unechoed(tmp_path: Path) -> None:
    pem = private_key_pem()
    result = start("serve", tmp_path, INGEST_JWT_PUBLIC_KEY=pem)
    assert_refused(result, "INGEST_JWT_PUBLIC_KEY: the RS256 key is a private key")
    assert pem.splitlines()[1] not in result.stderr


def test_dev_refuses_a_kept_secret_too_short_for_hs256(tmp_path: Path) -> None:
    (tmp_path / "dev-jwt-secret").write_text("edited-by-hand\n")
    result = start("dev", tmp_path)
    assert_refused(result, f"{tmp_path / 'dev-jwt-secret'}: the HS256 secret is 14 bytes")
