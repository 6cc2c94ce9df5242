"""deploy/Dockerfile and .dockerignore: a slim non-root runtime with a health check."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable

import pytest

from tests.deploy.support import (
    DOCKERFILE,
    DOCKERIGNORE,
    ROOT,
    DockerIgnore,
    Stage,
    dockerfile_stages,
)

# Things that belong to development, never to the runtime image.
DEV_TOOLS = ("pytest", "ruff", "mypy", "testcontainers", "import-linter", ".[dev]", "'.[dev]'")


def dockerfile_problems(text: str) -> list[str]:
    """What is wrong with a Dockerfile for the ingest image (empty when nothing is)."""
    problems: list[str] = []
    stages = dockerfile_stages(text)
    if len(stages) < 2:
        return ["not multi-stage: the runtime must not carry the build tools"]
    runtime = stages[-1]
    if not runtime.base.startswith("python:3.11-slim"):
        problems.append(f"runtime stage is {runtime.base}, not python:3.11-slim")
    problems += _user_problems(runtime)
    problems += _healthcheck_problems(runtime)
    problems += _command_problems(runtime)
    for instruction in runtime.all("COPY") + runtime.all("ADD"):
        if "--from=" not in instruction.arguments:
            problems.append(f"runtime copies from the build context: {instruction.arguments}")
    for stage in stages:
        for run in stage.all("RUN"):
            problems += [
                f"installs a dev tool ({tool})" for tool in DEV_TOOLS if tool in run.arguments
            ]
    return problems


def _user_problems(runtime: Stage) -> list[str]:
    users = runtime.all("USER")
    if not users:
        return ["runtime stage runs as root (no USER)"]
    user = users[-1].arguments.split(":")[0]
    if user in ("root", "0"):
        return ["runtime stage runs as root"]
    if not user.isdigit():
        return [f"USER {user} is not numeric: Kubernetes' runAsNonRoot cannot verify a name"]
    last_user = max(i for i, ins in enumerate(runtime.instructions) if ins.keyword == "USER")
    if any(ins.keyword == "USER" for ins in runtime.instructions[last_user + 1 :]):
        return ["a later USER switches back"]
    return []


def _healthcheck_problems(runtime: Stage) -> list[str]:
    checks = runtime.all("HEALTHCHECK")
    if not checks:
        return ["no HEALTHCHECK"]
    check = checks[-1].arguments
    command = check.split("CMD", 1)[1].strip() if "CMD" in check else ""
    if not command:
        return ["HEALTHCHECK has no command"]
    words = json.loads(command) if command.startswith("[") else shlex.split(command)
    problems = []
    if words[0] not in ("python", "python3", "/opt/venv/bin/python"):
        problems.append(f"HEALTHCHECK runs {words[0]} (the slim base has no curl or wget)")
    if "/healthz" not in command:
        problems.append("HEALTHCHECK does not probe /healthz")
    return problems


def _exec_form(runtime: Stage, keyword: str) -> list[str] | None:
    found = runtime.all(keyword)
    if not found:
        return None
    value: list[str] = json.loads(found[-1].arguments)
    return value


def _command_problems(runtime: Stage) -> list[str]:
    problems = []
    if _exec_form(runtime, "ENTRYPOINT") != ["ingest"]:
        problems.append('ENTRYPOINT is not ["ingest"]')
    if _exec_form(runtime, "CMD") != ["serve", "--host", "0.0.0.0"]:
        problems.append('CMD is not ["serve", "--host", "0.0.0.0"]')
    exposed = {port for e in runtime.all("EXPOSE") for port in e.arguments.split()}
    if not exposed & {"8080", "8080/tcp"}:
        problems.append("port 8080 is not exposed")
    return problems


def test_the_dockerfile_has_no_problems() -> None:
    assert dockerfile_problems(DOCKERFILE.read_text(encoding="utf-8")) == []


def test_the_runtime_stage_is_python_311_slim() -> None:
    stages = dockerfile_stages(DOCKERFILE.read_text(encoding="utf-8"))
    assert len({stage.base for stage in stages}) == 1, (
        "the venv must run on the base it was built on"
    )
    assert stages[-1].base.startswith("python:3.11-slim")


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda t: t.replace("USER 10001:10001\n", ""), "runs as root"),
        (lambda t: t.replace("USER 10001:10001", "USER root"), "runs as root"),
        (lambda t: re.sub(r"HEALTHCHECK[^\n]*\\\n[^\n]*\n", "", t), "no HEALTHCHECK"),
        (lambda t: t.replace('CMD ["python", "-c"', 'CMD ["curl", "-c"'), "runs curl"),
        (lambda t: t.replace('ENTRYPOINT ["ingest"]', 'ENTRYPOINT ["python"]'), "ENTRYPOINT"),
        (lambda t: t.replace("pip install --no-deps .", "pip install '.[dev]'"), "dev tool"),
        (lambda t: t + "COPY tests /tests\n", "copies from the build context"),
    ],
)
def test_a_broken_dockerfile_is_caught(change: Callable[[str], str], problem: str) -> None:
    original = DOCKERFILE.read_text(encoding="utf-8")
    broken = change(original)
    assert broken != original, "the mutation did not apply: update this test"
    assert any(problem in p for p in dockerfile_problems(broken))


# --- .dockerignore ---------------------------------------------------------------------


def test_dockerignore_keeps_out_what_the_image_must_not_hold() -> None:
    ignore = DockerIgnore(DOCKERIGNORE.read_text(encoding="utf-8"))
    for path in (
        ".venv/bin/python",
        ".git/HEAD",
        "tests/unit/test_settings.py",
        "bench-results/throughput.json",
        "ingest/__pycache__/settings.cpython-311.pyc",
        ".mypy_cache/3.11/x.json",
        ".ruff_cache/CACHEDIR.TAG",
        ".pytest_cache/v/cache",
        "deploy/k8s/deployment.yaml",
        "deploy/compose.yaml",
    ):
        assert ignore.excluded(path), f"{path} would be sent to the image build"


def test_dockerignore_keeps_everything_the_dockerfile_copies() -> None:
    ignore = DockerIgnore(DOCKERIGNORE.read_text(encoding="utf-8"))
    build = dockerfile_stages(DOCKERFILE.read_text(encoding="utf-8"))[0]
    sources = [
        word
        for copy in build.all("COPY")
        if "--from=" not in copy.arguments
        for word in copy.arguments.split()[:-1]
        if not word.startswith("--")
    ]
    assert sources, "the build stage copies nothing from the context"
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such path"
        files = [ROOT / source] if (ROOT / source).is_file() else (ROOT / source).rglob("*")
        for path in files:
            relative = path.relative_to(ROOT).as_posix()
            if path.is_dir() or "__pycache__" in relative or _deployment_file(relative):
                continue
            # Sources and package data alike (e.g. static files served by the HTTP edge).
            assert not ignore.excluded(relative), f"{relative} is needed but ignored"
    # The CLI imports the local stack (deploy.stack), so it must reach the image.
    assert not ignore.excluded("deploy/stack/lifecycle.py")
    assert not ignore.excluded("deploy/__init__.py")


def _deployment_file(relative: str) -> bool:
    """deploy/'s own files (this Dockerfile, compose, k8s): not part of the Python package."""
    return (
        relative.startswith("deploy/")
        and not relative.startswith("deploy/stack/")
        and relative != "deploy/__init__.py"
    )


def test_the_dockerignore_matcher_follows_docker_rules() -> None:
    ignore = DockerIgnore("deploy/*\n!deploy/stack\n**/__pycache__\n")
    assert ignore.excluded("deploy/k8s/x.yaml")
    assert not ignore.excluded("deploy/stack/kafka.py")
    assert ignore.excluded("deploy/stack/__pycache__/kafka.cpython-311.pyc")
    assert ignore.excluded("__pycache__/x.pyc")
    assert not ignore.excluded("ingest/settings.py")
