"""The released snapshot of the event schemas, and the check that keeps consumers of it working.

Each breaking change is applied to a copy of the snapshot and must be reported
with the event type and the field; each harmless one must pass. The last tests
edit the Python types of a scratch copy of the `schemas` package and run the
check as a release would, in a subprocess.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from schemas import ERROR_CODES
from schemas.compatibility import RELEASED_DIR, breaking_changes, check, load
from schemas.jsonschema import JSON_DIR

SCHEMAS_PACKAGE = Path(__file__).resolve().parents[2] / "schemas"

Files = dict[str, dict[str, Any]]


def definition(files: Files, tag: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = files[f"{tag}.json"]["$defs"][name]
    return found


def fields(files: Files, tag: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = definition(files, tag, name)["properties"]
    return found


def changed(tag: str, struct: str, field: str, **keywords: Any) -> Callable[[Files], None]:
    """A change that sets these keywords in the schema of one field."""

    def apply(files: Files) -> None:
        fields(files, tag, struct)[field].update(keywords)

    return apply


def rename_sha256(files: Files) -> None:
    completed = definition(files, "ingest.upload.completed", "UploadCompleted")
    completed["properties"]["content_sha256"] = completed["properties"].pop("sha256")
    completed["required"] = [
        "content_sha256" if name == "sha256" else name for name in completed["required"]
    ]


def add_required_field(files: Files) -> None:
    failed = definition(files, "ingest.upload.failed", "UploadFailed")
    failed["properties"]["retriable"] = {"type": "boolean"}
    failed["required"].append("retriable")


def make_optional(files: Files) -> None:
    definition(files, "ingest.upload.failed", "UploadFailed")["required"].remove("error_message")


BREAKING: list[tuple[str, Callable[[Files], object], list[str]]] = [
    (
        "a field renamed",
        rename_sha256,
        [
            "ingest.upload.completed: field `sha256` removed; consumers of the release read it"
            " (renamed to `content_sha256`?)",
            "ingest.upload.completed: required field `content_sha256` added; records already in"
            " the topics lack it (give it a default)",
        ],
    ),
    (
        "a field removed",
        lambda files: fields(files, "ingest.upload.progress", "UploadProgress").pop("eta_seconds"),
        ["ingest.upload.progress: field `eta_seconds` removed; consumers of the release read it"],
    ),
    (
        "a nullable field made non-null",
        changed(
            "ingest.upload.started",
            "UploadStarted",
            "total_bytes",
            anyOf=[{"type": "integer", "minimum": 0}],
        ),
        [
            "ingest.upload.started: field `total_bytes` narrowed: null is refused, and records"
            " already in the topics hold it"
        ],
    ),
    (
        "a nested number made an integer",
        changed("ingest.detection.completed", "VideoInfo", "fps", type="integer"),
        [
            "ingest.detection.completed: field `video.fps` narrowed: a number is refused, and"
            " records already in the topics hold it"
        ],
    ),
    (
        "a bound tightened",
        changed("ingest.upload.started", "UploadStarted", "priority", maximum=9),
        [
            "ingest.upload.started: field `priority` narrowed: maximum 10 -> 9; records already"
            " in the topics may not fit"
        ],
    ),
    (
        "a required field added",
        add_required_field,
        [
            "ingest.upload.failed: required field `retriable` added; records already in the"
            " topics lack it (give it a default)"
        ],
    ),
    (
        "an enum value removed",
        changed(
            "ingest.upload.failed",
            "UploadFailed",
            "error_code",
            enum=[code for code in ERROR_CODES if code != "TIMEOUT"],
        ),
        [
            'ingest.upload.failed: field `error_code` narrowed: the value "TIMEOUT" is refused,'
            " and records already in the topics hold it"
        ],
    ),
    (
        "an enum value added to a closed set",
        changed(
            "ingest.upload.failed",
            "UploadFailed",
            "protocol",
            enum=["dashboard", "stream", "tus", "ftp"],
        ),
        [
            'ingest.upload.failed: field `protocol` widened: the value "ftp" is accepted, and'
            " consumers of the release refuse it"
        ],
    ),
    (
        "a type widened",
        changed("ingest.quota.updated", "QuotaUpdated", "bytes_used", type="number"),
        [
            "ingest.quota.updated: field `bytes_used` widened: a number is accepted, and"
            " consumers of the release refuse it"
        ],
    ),
    (
        "a pattern changed",
        changed(
            "ingest.upload.completed", "UploadCompleted", "sha256", pattern="^[0-9a-fA-F]{64}$"
        ),
        [
            "ingest.upload.completed: field `sha256` changed: pattern '^[0-9a-f]{64}$' ->"
            " '^[0-9a-fA-F]{64}$'; both sides may refuse"
        ],
    ),
    (
        "a required field made optional",
        make_optional,
        [
            "ingest.upload.failed: field `error_message` is no longer required; consumers of the"
            " release expect it"
        ],
    ),
    (
        "an event type removed",
        lambda files: files.pop("ingest.quota.updated.json"),
        ["ingest.quota.updated: event type removed; consumers of the release wait for it"],
    ),
]


def add_defaulted_field(files: Files) -> None:
    fields(files, "ingest.upload.completed", "UploadCompleted")["codec_hint"] = {
        "anyOf": [{"type": "string"}, {"type": "null"}],
        "default": None,
    }


HARMLESS: list[tuple[str, Callable[[Files], object]]] = [
    ("a field added with a default", add_defaulted_field),
    (
        "an event type added",
        lambda files: files.update(
            {"ingest.upload.paused.json": files["ingest.upload.failed.json"]}
        ),
    ),
    (
        "a description reworded",
        changed("ingest.detection.completed", "VideoInfo", "fps", description="frames per second"),
    ),
    (
        "a default changed",
        changed("ingest.upload.started", "UploadStarted", "priority", default=6),
    ),
]


@pytest.fixture(scope="module")
def released() -> Files:
    return load(RELEASED_DIR)


def test_the_types_of_now_keep_every_consumer_of_the_release_working() -> None:
    problems = check()
    assert not problems, "\n".join(
        ["these changes break consumers (see the rules in schemas/events/__init__.py):", *problems]
    )


def test_the_snapshot_holds_a_schema_for_every_released_type() -> None:
    files = load(RELEASED_DIR)
    assert "events.json" in files
    union = files["events.json"]["discriminator"]["mapping"]
    assert {f"{tag}.json" for tag in union} == set(files) - {"events.json"}
    for name, schema in files.items():
        assert schema["$id"].startswith("urn:video-ingest:schema:"), name


@pytest.mark.parametrize(("change", "apply", "expected"), BREAKING, ids=[b[0] for b in BREAKING])
def test_a_breaking_change_is_reported_naming_type_and_field(
    released: Files, change: str, apply: Callable[[Files], object], expected: list[str]
) -> None:
    current = copy.deepcopy(released)
    apply(current)
    assert breaking_changes(released, current) == expected


@pytest.mark.parametrize(("change", "apply"), HARMLESS, ids=[h[0] for h in HARMLESS])
def test_a_change_every_consumer_survives_passes(
    released: Files, change: str, apply: Callable[[Files], None]
) -> None:
    current = copy.deepcopy(released)
    apply(current)
    assert breaking_changes(released, current) == []


# --- the check as a release runs it, on a scratch copy of the package -----------------


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """A copy of the `schemas` package, with its snapshot, that a test may edit."""
    shutil.copytree(
        SCHEMAS_PACKAGE, tmp_path / "schemas", ignore=shutil.ignore_patterns("__pycache__")
    )
    return tmp_path


def edit_events(root: Path, old: str, new: str) -> None:
    """Edit the upload lifecycle events of the scratch copy (`schemas/events/upload.py`)."""
    events = root / "schemas" / "events" / "upload.py"
    text = events.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    events.write_text(text.replace(old, new), encoding="utf-8")


def run_check(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # The scratch directory comes first on sys.path, so its `schemas` is the one imported.
    return subprocess.run(
        [sys.executable, "-m", "schemas.compatibility", *args],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_renaming_an_event_field_fails_the_check_naming_the_field(scratch: Path) -> None:
    edit_events(
        scratch, "    sha256: Sha256Hex\n    etag:", "    content_sha256: Sha256Hex\n    etag:"
    )

    result = run_check(scratch)

    assert result.returncode == 1, result.stderr
    assert (
        "breaking: ingest.upload.completed: field `sha256` removed; consumers of the release"
        " read it (renamed to `content_sha256`?)"
    ) in result.stderr.splitlines()


def test_a_release_refuses_a_breaking_change_and_keeps_the_snapshot(scratch: Path) -> None:
    edit_events(
        scratch, "    sha256: Sha256Hex\n    etag:", "    content_sha256: Sha256Hex\n    etag:"
    )
    released = scratch / "schemas" / "released"
    before = {path.name: path.read_text() for path in released.iterdir()}

    result = run_check(scratch, "--release")

    assert result.returncode == 1
    assert "field `sha256` removed" in result.stderr
    assert {path.name: path.read_text() for path in released.iterdir()} == before


def test_a_release_with_a_new_defaulted_field_refreshes_the_snapshot(scratch: Path) -> None:
    edit_events(
        scratch,
        "    reason: str | None\n",
        "    reason: str | None\n    cancelled_by: str | None = None\n",
    )
    assert run_check(scratch).returncode == 0

    result = run_check(scratch, "--release")

    assert result.returncode == 0, result.stderr
    released = (scratch / "schemas" / "released" / "ingest.upload.cancelled.json").read_text()
    assert '"cancelled_by"' in released
    assert '"cancelled_by"' not in (JSON_DIR / "ingest.upload.cancelled.json").read_text()
