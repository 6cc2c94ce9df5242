"""The AsyncAPI document of the topics: committed, current, valid, and true to the wire.

Validity is judged by the official AsyncAPI parser (`scripts/asyncapi-validator`,
installed by `make test`); a machine without it fails here rather than skipping.
What a record really carries is checked by validating `encode()`'s headers and
payload of every sample event against the document's own schemas.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from schemas import TOPIC_SPECS, Topics, encode, headers_dict, topic_for
from schemas.asyncapi import ASYNCAPI_FILE, drift, generate, render
from schemas.jsonschema import JSON_DIR, main
from tests.samples import SAMPLES, SOURCE

REPO = Path(__file__).resolve().parents[2]
VALIDATOR = REPO / "scripts" / "asyncapi-validator"

HEADERS = [
    "ce_specversion",
    "ce_id",
    "ce_source",
    "ce_type",
    "ce_time",
    "ce_subject",
    "ce_dataschema",
    "content-type",
]
# event type -> the field that keys its records (written out, not derived from the code)
KEYS = {
    "ingest.upload.started": "user_id",
    "ingest.upload.progress": "upload_id",
    "ingest.upload.completed": "user_id",
    "ingest.upload.failed": "user_id",
    "ingest.upload.cancelled": "user_id",
    "ingest.detection.completed": "user_id",
    "ingest.detection.failed": "user_id",
    "ingest.quota.updated": "user_id",
    "ingest.quota.limits_set": "user_id",
}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return generate()


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(VALIDATOR), "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # Not installed is a failure of the set-up, never a reason to skip the check.
    assert result.returncode != 3, result.stderr
    return result


def messages_by_type(document: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """Event type -> (component name, message object)."""
    components = document["components"]["messages"]
    return {message["name"]: (name, message) for name, message in components.items()}


def test_the_committed_document_matches_the_types() -> None:
    assert not drift(), (
        "schemas/asyncapi.json is out of date: run `python -m schemas.jsonschema` and commit it"
    )


def test_the_official_parser_finds_the_committed_document_valid() -> None:
    result = validate(ASYNCAPI_FILE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid AsyncAPI 3.0.0" in result.stdout


def test_the_parser_refuses_an_operation_sending_another_channels_message(
    tmp_path: Path,
) -> None:
    document = generate()
    document["operations"]["send_uploads"]["messages"].append(
        {"$ref": "#/channels/progress/messages/UploadProgress"}
    )
    broken = tmp_path / "asyncapi.json"
    broken.write_text(render(document), encoding="utf-8")

    result = validate(broken)

    assert result.returncode == 1, result.stdout
    assert "asyncapi3-operation-messages-from-referred-channel" in result.stdout


def test_every_topic_is_a_channel_with_its_prefix_partitions_and_cleanup(
    document: dict[str, Any],
) -> None:
    channels = {channel["title"]: channel for channel in document["channels"].values()}
    assert set(channels) == {spec.suffix for spec in TOPIC_SPECS}
    for spec in TOPIC_SPECS:
        channel = channels[spec.suffix]
        assert channel["address"] == "{prefix}" + spec.suffix
        assert channel["parameters"]["prefix"]["default"] == "ingest."
        kafka = channel["bindings"]["kafka"]
        assert kafka["partitions"] == spec.partitions
        configuration = kafka["topicConfiguration"]
        assert configuration["cleanup.policy"] == spec.config["cleanup.policy"].split(",")
        if "retention.ms" in spec.config:
            assert configuration["retention.ms"] == int(spec.config["retention.ms"])
        assert f"Key: {spec.key};" in channel["description"]
        # The topic's key plan and its messages' keys are the same field.
        for reference in channel.get("messages", {}).values():
            name = reference["$ref"].removeprefix("#/components/messages/")
            key = document["components"]["messages"][name]["bindings"]["kafka"]["key"]
            assert f"`{spec.key}`" in key["description"]
    assert "Compacted" in channels["quota"]["description"]
    assert "Compacted" not in channels["uploads"]["description"]


def test_every_event_type_is_one_message_on_the_channel_of_its_topic(
    document: dict[str, Any],
) -> None:
    messages = messages_by_type(document)
    assert set(messages) == set(KEYS)
    for tag, (name, _) in messages.items():
        suffix = topic_for(tag, Topics(""))
        carriers = [i for i, c in document["channels"].items() if name in c.get("messages", {})]
        [channel_id] = carriers
        assert document["channels"][channel_id]["title"] == suffix
        assert document["channels"][channel_id]["messages"][name] == {
            "$ref": f"#/components/messages/{name}"
        }
        sent = document["operations"][f"send_{channel_id}"]
        assert sent["action"] == "send"
        assert {"$ref": f"#/channels/{channel_id}/messages/{name}"} in sent["messages"]


def test_messages_declare_the_cloudevents_headers_key_and_json_schema(
    document: dict[str, Any],
) -> None:
    for tag, (_, message) in messages_by_type(document).items():
        headers = message["headers"]
        assert headers["required"] == HEADERS
        assert list(headers["properties"]) == HEADERS
        assert headers["properties"]["ce_type"]["const"] == tag
        assert headers["properties"]["ce_specversion"]["const"] == "1.0"
        assert headers["properties"]["content-type"]["const"] == "application/json"
        published = json.loads((JSON_DIR / f"{tag}.json").read_text(encoding="utf-8"))
        assert headers["properties"]["ce_dataschema"]["const"] == published["$id"]
        assert message["contentType"] == "application/json"
        assert f"`{KEYS[tag]}`" in message["bindings"]["kafka"]["key"]["description"]
        # The payload is the very definition published in schemas/json/, references aside.
        name = message["payload"]["$ref"].removeprefix("#/components/schemas/")
        definition = published["$defs"][published["$ref"].removeprefix("#/$defs/")]
        payload = json.dumps(document["components"]["schemas"][name], sort_keys=True)
        assert payload.replace("#/components/schemas/", "#/$defs/") == json.dumps(
            definition, sort_keys=True
        )


@pytest.mark.parametrize("tag", sorted(KEYS))
def test_what_encode_writes_matches_the_documented_headers_and_payload(
    document: dict[str, Any], tag: str
) -> None:
    registry: Registry[Any] = Registry().with_resource(
        "urn:asyncapi", Resource.from_contents(document, default_specification=DRAFT7)
    )
    record = encode(SAMPLES[tag], source=SOURCE)
    name, _ = messages_by_type(document)[tag]
    message = f"urn:asyncapi#/components/messages/{name}"
    for part, instance in (
        ("headers", headers_dict(record.headers)),
        ("payload", json.loads(record.value)),
    ):
        validator = jsonschema.Draft7Validator(
            {"$ref": f"{message}/{part}"},
            registry=registry,
            format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER,
        )
        errors = [error.message for error in validator.iter_errors(instance)]
        assert not errors, (tag, part, errors)


def test_the_generator_command_writes_and_checks_the_document(tmp_path: Path) -> None:
    json_dir, document = tmp_path / "json", tmp_path / "asyncapi.json"
    args = ["--dir", str(json_dir), "--asyncapi", str(document)]

    assert main(args) == 0
    assert document.read_text(encoding="utf-8") == render(generate())
    assert main([*args, "--check"]) == 0

    document.write_text(document.read_text(encoding="utf-8").replace("user_id", "owner_id"))
    assert main([*args, "--check"]) == 1
