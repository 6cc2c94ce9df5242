"""Every YAML file under deploy/ parses, and the known ones are there."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.support import DEPLOY, deploy_yaml_files, load_yaml_documents


def test_the_deployment_files_exist() -> None:
    expected = {
        "Dockerfile",
        "compose.yaml",
        "nginx/ingest.conf",
        "s3-lifecycle.json",
        "README.md",
        "k8s/kustomization.yaml",
    }
    missing = {name for name in expected if not (DEPLOY / name).is_file()}
    assert not missing


@pytest.mark.parametrize("path", deploy_yaml_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_yaml_parses_into_mappings(path: Path) -> None:
    documents = load_yaml_documents(path)
    assert documents, f"{path} holds no document"
    assert all(isinstance(doc, dict) for doc in documents)
