"""The AsyncAPI 3.0 document of the Kafka topics, generated from the event types and topic specs.

One channel per topic (its address carries the configurable prefix as the
`prefix` parameter; partitions and cleanup in the Kafka binding), one message
per event type with its CloudEvents binary-mode headers, its record key and its
payload schema (the same definitions as `schemas/json/`), and one `send`
operation per topic that carries events. `generate()` builds it in memory;
`python -m schemas.jsonschema` writes it to `schemas/asyncapi.json` beside the
JSON Schemas, and its `--check` reports drift. Generation raises KeyError when
a topic has no producer described here, so a new topic cannot go undocumented.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import msgspec

from schemas.cloudevents import CONTENT_TYPE, SPEC_VERSION
from schemas.definitions import publish
from schemas.events import (
    EVENT_TYPES,
    Event,
    event_type,
    key_field,
    schema_uri,
    subject_field,
)
from schemas.topics import DEFAULT_PREFIX, TOPIC_SPECS, TopicSpec, event_types_on

__all__ = ["ASYNCAPI_FILE", "CONTRACT_VERSION", "drift", "generate", "render", "write"]

ASYNCAPI_FILE: Final = Path(__file__).parent / "asyncapi.json"

# The version of the event contract, not of the service. Its minor number goes up
# at a release that adds types or fields; the major never moves, since a change that
# would break a consumer is a new type instead (see schemas.events).
CONTRACT_VERSION: Final = "1.0.0"

_KAFKA_BINDING: Final = "0.5.0"
_SCHEMAS_REF: Final = "#/components/schemas/{name}"

# Which process publishes each topic; every topic needs an entry.
_PRODUCERS: Final[Mapping[str, str]] = {
    "uploads": "`ingest serve` (and `ingest reconcile`, re-emitting a missing terminal event)",
    "progress": "`ingest serve`, at most every 0.5 s per upload and on every stored part",
    "detections": "`ingest consume detection`",
    "quota": "`ingest consume quota`, a full snapshot after every change",
    "quota.commands": "`ingest serve`, on `PUT /v1/admin/quotas/{user_id}`",
    "dlq": "any consumer, for a record it gave up on",
}

_OVERVIEW: Final = """\
Lifecycle, progress, detection and quota events of the video ingest service.

Every record is a CloudEvents 1.0 event in Kafka binary content mode: the value
is the JSON payload described here, the CloudEvents attributes travel in the
`ce_*` headers beside `content-type: application/json`, and the key is the
UTF-8 bytes of the field each message's Kafka binding names.

* Delivery is at least once: the same event may arrive twice (a producer retry,
  a replay from the journal, `ingest reconcile`). Deduplicate by `ce_id`, which
  equals the payload's `event_id`.
* Records with the same key are on one partition, in the order they were
  published; there is no order across keys.
* A `ce_type` you do not know is skipped, never an error: new types are added
  without notice. Fields are only ever added, with defaults; ignore the ones you
  do not know.
* `ce_dataschema` names the type's JSON Schema (`urn:video-ingest:schema:<type>`,
  published as `schemas/json/<type>.json`).

Topic names start with the deployment's prefix (`INGEST_TOPIC_PREFIX`,
`ingest.` by default), the `prefix` parameter of every channel address.
"""


def generate() -> dict[str, Any]:
    """The whole AsyncAPI document as plain JSON data."""
    references, definitions = msgspec.json.schema_components(
        list(EVENT_TYPES.values()), ref_template=_SCHEMAS_REF
    )
    payloads = dict(zip(EVENT_TYPES.values(), references, strict=True))
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for spec in TOPIC_SPECS:
        channel_id = spec.suffix.replace(".", "_")
        classes = [EVENT_TYPES[tag] for tag in event_types_on(spec.suffix)]
        for cls in classes:
            messages[cls.__name__] = _message(cls, payloads[cls])
        channels[channel_id] = _channel(spec, [cls.__name__ for cls in classes])
        if classes:
            operations[f"send_{channel_id}"] = _operation(spec, channel_id, classes)
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "video-ingest events",
            "version": CONTRACT_VERSION,
            "description": _OVERVIEW,
            "license": {"name": "Apache-2.0"},
        },
        "defaultContentType": CONTENT_TYPE,
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": publish(definitions)},
    }


def _channel(spec: TopicSpec, message_names: list[str]) -> dict[str, Any]:
    compacted = "compact" in spec.config.get("cleanup.policy", "")
    lines = [
        f"{spec.description[:1].upper()}{spec.description[1:]}.",
        "",
        f"Published by {_PRODUCERS[spec.suffix]}.",
        f"Key: {spec.key}; records with the same key are on one partition, in order.",
    ]
    if compacted:
        lines.append("Compacted: only the latest record of each key is sure to be kept.")
    channel: dict[str, Any] = {
        "address": "{prefix}" + spec.suffix,
        "title": spec.suffix,
        "description": "\n".join(lines),
        "parameters": {
            "prefix": {
                "description": "the deployment's topic prefix (INGEST_TOPIC_PREFIX)",
                "default": DEFAULT_PREFIX,
                "examples": [DEFAULT_PREFIX],
            }
        },
        "bindings": {
            "kafka": {
                "partitions": spec.partitions,
                "topicConfiguration": _topic_configuration(spec.config),
                "bindingVersion": _KAFKA_BINDING,
            }
        },
    }
    if message_names:
        channel["messages"] = {
            name: {"$ref": f"#/components/messages/{name}"} for name in message_names
        }
    return channel


def _topic_configuration(config: Mapping[str, str]) -> dict[str, Any]:
    # The binding types these: cleanup.policy is a list, durations and sizes integers.
    typed: dict[str, Any] = {}
    for name, value in sorted(config.items()):
        if name == "cleanup.policy":
            typed[name] = value.split(",")
        elif name.endswith((".ms", ".bytes")):
            typed[name] = int(value)
        else:
            typed[name] = value
    return typed


def _operation(spec: TopicSpec, channel_id: str, classes: list[type[Event]]) -> dict[str, Any]:
    return {
        "action": "send",
        "channel": {"$ref": f"#/channels/{channel_id}"},
        "title": f"Publish to {spec.suffix}",
        "summary": f"Published by {_PRODUCERS[spec.suffix]}.",
        "messages": [
            {"$ref": f"#/channels/{channel_id}/messages/{cls.__name__}"} for cls in classes
        ],
    }


def _message(cls: type[Event], payload: dict[str, Any]) -> dict[str, Any]:
    tag = event_type(cls)
    doc = inspect.cleandoc(cls.__doc__ or "")
    key = key_field(cls)
    return {
        "name": tag,
        "title": tag,
        "summary": doc.splitlines()[0] if doc else tag,
        "description": doc,
        "contentType": CONTENT_TYPE,
        "headers": _headers(cls, tag),
        "payload": payload,
        "bindings": {
            "kafka": {
                "key": {
                    "type": "string",
                    "description": f"the event's `{key}`, UTF-8 encoded",
                },
                "bindingVersion": _KAFKA_BINDING,
            }
        },
    }


def _headers(cls: type[Event], tag: str) -> dict[str, Any]:
    subject = subject_field(cls)
    properties: dict[str, Any] = {
        "ce_specversion": {"const": SPEC_VERSION, "description": "CloudEvents version"},
        "ce_id": {
            "type": "string",
            "minLength": 1,
            "description": "unique id of the event, equal to the payload's `event_id`: "
            "deduplicate by it",
        },
        "ce_source": {
            "type": "string",
            "format": "uri-reference",
            "description": "the publishing process, e.g. `/ingest/<instance id>`",
        },
        "ce_type": {"const": tag, "description": "the event type, equal to the payload's `type`"},
        "ce_time": {
            "type": "string",
            "format": "date-time",
            "description": "when it happened, UTC: the payload's `occurred_at`",
        },
        "ce_subject": {
            "type": "string",
            "minLength": 1,
            "description": f"what the event is about: the payload's `{subject}`",
        },
        "ce_dataschema": {
            "const": schema_uri(tag),
            "description": f"the payload's JSON Schema, `schemas/json/{tag}.json`",
        },
        "content-type": {"const": CONTENT_TYPE, "description": "media type of the value"},
    }
    return {
        "type": "object",
        "description": "Kafka record headers, as UTF-8 text",
        "properties": properties,
        "required": list(properties),
    }


def render(document: dict[str, Any]) -> str:
    """The exact text of the published document."""
    return json.dumps(document, indent=2) + "\n"


def drift(path: Path = ASYNCAPI_FILE) -> bool:
    """Whether the file at `path` is missing or differs from what `generate()` renders."""
    return not path.is_file() or path.read_text(encoding="utf-8") != render(generate())


def write(path: Path = ASYNCAPI_FILE) -> Path:
    """Write the document to `path`; returns it."""
    path.write_text(render(generate()), encoding="utf-8")
    return path
