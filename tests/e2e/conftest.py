"""`ingest dev` started as a user would start it, in a subprocess with its own data directory."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from deploy.stack.process import free_port
from tests.e2e.browser import browser  # noqa: F401  (the dashboard tests' fixture)


@dataclass(frozen=True)
class DevServer:
    url: str
    token: str
    admin_token: str
    data_dir: Path
    env: dict[str, str]

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cli.main", *args],
            env={**self.env, "INGEST_URL": self.url, "INGEST_TOKEN": self.token},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    data_dir = tmp_path_factory.mktemp("dev-data")
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"KAFKA_BOOTSTRAP_SERVERS", "S3_ENDPOINT_URL", "INGEST_JWT_SECRET"}
    }
    env.update(
        INGEST_DATA_DIR=str(data_dir),
        INGEST_CLIENT_STATE=str(data_dir / "client-state.json"),
        PYTHONUNBUFFERED="1",
    )
    log = data_dir / "dev.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "dev", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        text = ""
        while time.monotonic() < deadline:
            text = log.read_text()
            if "INGEST_TOKEN=" in text and _answers(f"{url}/healthz"):
                break
            if process.poll() is not None:
                pytest.fail(f"ingest dev exited:\n{text}")
            time.sleep(0.2)
        else:
            pytest.fail(f"ingest dev did not start:\n{text}")
        token = re.search(r"INGEST_TOKEN=(\S+)", text)
        admin = re.search(r"admin token:\s+(\S+)", text)
        assert token, text
        assert admin, text
        yield DevServer(url, token.group(1), admin.group(1), data_dir, env)
    finally:
        process.terminate()
        process.wait(timeout=30)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False
