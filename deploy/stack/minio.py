"""A real MinIO server built from source with the Go toolchain, on loopback.

MinIO is built once with `go install` at a pinned module version into the
cache directory. MinIO verifies the S3 checksums the write path sends, which
is why it is the S3 server of the stack. Fails with StackError carrying the
tail of the build or server log.
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from pathlib import Path

from deploy.stack import process
from deploy.stack.errors import StackError
from deploy.stack.gobuild import go_install

# The last published commit of github.com/minio/minio (February 2026), as a Go pseudo-version.
MINIO_VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c"
ACCESS_KEY = "minioadmin"
SECRET_KEY = "minioadmin"


def ensure_binary(cache_dir: Path) -> Path:
    """The MinIO server binary, built from the Go module proxy on first use."""
    return go_install(
        "github.com/minio/minio",
        MINIO_VERSION,
        binary="minio",
        home=cache_dir / f"minio-{MINIO_VERSION}",
    )


def start(*, binary: Path, state_dir: Path, port: int, console_port: int) -> tuple[int, Path]:
    data_dir = state_dir / "minio-data"
    log = state_dir / "minio.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "MINIO_ROOT_USER": ACCESS_KEY,
        "MINIO_ROOT_PASSWORD": SECRET_KEY,
        "MINIO_BROWSER": "off",
        "MINIO_UPDATE": "off",
        "MINIO_CI_CD": "1",
    }
    server = process.spawn(
        [
            str(binary),
            "server",
            str(data_dir),
            "--quiet",
            "--address",
            f"127.0.0.1:{port}",
            "--console-address",
            f"127.0.0.1:{console_port}",
        ],
        log_path=log,
        env=env,
    )
    return server.pid, log


def wait_ready(*, pid: int, marker: str, port: int, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{port}/minio/health/ready"
    while time.monotonic() < deadline:
        if not process.is_running(pid, marker):
            raise StackError(f"MinIO exited during start-up; {log}:\n{process.tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    raise StackError(f"MinIO was not healthy within {timeout:.0f}s; {log}:\n{process.tail(log)}")
