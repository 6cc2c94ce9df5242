"""tus-js-client, the tus project's JavaScript client, for the interoperability tests.

`scripts/tus-js-client install` (run by `make test`) puts the pinned package in a cache
outside the repository; `client_dir()` finds it. Without Node.js a local run skips these
tests saying why, but under CI (`CI` set to true) that fails: CI must run them. Node.js
present but the package not installed is a set-up fault and fails with the command to run.
`run_upload` drives tests/js/tus-upload.cjs in a child process (never blocking the loop).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
INSTALLER = REPO / "scripts" / "tus-js-client"
UPLOAD_SCRIPT = REPO / "tests" / "js" / "tus-upload.cjs"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def client_dir() -> Path:
    """The directory holding node_modules/tus-js-client; skips or fails as described above."""
    if shutil.which("node") is None:
        message = (
            "Node.js is not installed: the tus-js-client tests need it "
            "(scripts/system-deps installs it, then scripts/tus-js-client install)"
        )
        if _in_ci():
            pytest.fail(message)
        pytest.skip(message)
    found = subprocess.run(
        [str(INSTALLER), "dir"], capture_output=True, text=True, timeout=30, check=False
    )
    if found.returncode != 0:
        pytest.fail(found.stderr.strip() or f"{INSTALLER} dir exited {found.returncode}")
    return Path(found.stdout.strip())


def browser_bundle(directory: Path) -> Path:
    """tus-js-client's browser build (a UMD bundle defining `window.tus`)."""
    return directory / "node_modules" / "tus-js-client" / "dist" / "tus.min.js"


async def run_upload(
    directory: Path,
    endpoint: str,
    token: str,
    file: Path,
    *options: str,
    within: float = 120.0,
) -> dict[str, Any]:
    """Run one tus-js-client upload in Node.js; its JSON report (tests/js/tus-upload.cjs)."""
    args: Sequence[str] = (
        str(UPLOAD_SCRIPT),
        "--client",
        str(directory),
        "--endpoint",
        endpoint,
        "--file",
        str(file),
        *options,
    )
    process = await asyncio.create_subprocess_exec(
        "node",
        *args,
        env={**os.environ, "TUS_TOKEN": token},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(within):
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode(errors="replace")
    report: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return report
