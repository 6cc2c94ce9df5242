"""Building a pinned Go program with `go install` into a cache directory, once.

The stack's MinIO and the benchmark's reference tus server (tusd) are both
built from the Go module proxy at a pinned version; the binary is kept under
the cache directory (outside the repository) and reused.

How it fails: StackError naming the program when Go is missing or the build
fails, with the tail of the build log.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from deploy.stack import process
from deploy.stack.errors import StackError


def go_install(package: str, version: str, *, binary: str, home: Path) -> Path:
    """`home/binary`, built from `package@version` on first use."""
    built = home / binary
    if built.exists():
        return built
    if shutil.which("go") is None:
        raise StackError(
            f"{binary} is built with Go: install the Go toolchain (https://go.dev/doc/install)"
        )
    home.mkdir(parents=True, exist_ok=True)
    log = home / "build.log"
    env = {**os.environ, "GOBIN": str(home), "GOFLAGS": "-buildvcs=false", "CGO_ENABLED": "0"}
    with log.open("wb") as out:
        result = subprocess.run(
            ["go", "install", f"{package}@{version}"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            check=False,
        )
    if result.returncode != 0 or not built.exists():
        raise StackError(f"building {binary} {version} failed; {log}:\n{process.tail(log)}")
    return built
