"""The live service's public contract: its published JSON Schemas and its documented close codes."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec

from consumers.fanout import closecodes
from consumers.fanout.messages import render, translate
from schemas.jsonschema import LIVE_DIR, drift, generate_live
from schemas.live import LIVE_EVENT_TYPES, ClientMessage
from tests.samples import SAMPLES

README = Path(__file__).resolve().parents[2] / "README.md"


def test_published_live_schemas_match_the_types() -> None:
    wrong = drift(LIVE_DIR, live=True)
    assert not wrong, (
        f"schemas/json/live/ is out of date ({', '.join(wrong)}): "
        "run `python -m schemas.jsonschema`"
    )


def test_a_rendered_message_has_exactly_the_published_properties() -> None:
    schema = generate_live()["message.json"]
    definition = schema["$defs"][schema["$ref"].removeprefix("#/$defs/")]
    assert set(definition["properties"]["event_type"]["enum"]) == set(LIVE_EVENT_TYPES)
    for event in SAMPLES.values():
        message = translate(event)
        if message is None:
            continue
        payload = msgspec.json.decode(render(message, "AQ"))
        assert set(payload) == set(definition["properties"])
        assert set(definition["required"]) <= set(payload)


def test_client_messages_decode_as_documented() -> None:
    decoded = msgspec.json.decode(
        b'{"type":"subscribe_session","session_id":"s1"}', type=ClientMessage
    )
    assert decoded.session_id == "s1"
    schema = generate_live()["client-message.json"]
    definition = schema["$defs"][schema["$ref"].removeprefix("#/$defs/")]
    assert set(definition["properties"]["type"]["enum"]) == {
        "ping",
        "get_stats",
        "subscribe_session",
        "unsubscribe_session",
    }


def test_every_close_code_is_in_the_readme() -> None:
    text = README.read_text(encoding="utf-8")
    codes = {
        value
        for name, value in vars(closecodes).items()
        if re.fullmatch(r"[A-Z_]+", name) and isinstance(value, int)
    }
    assert codes >= {4400, 4401, 4408, 4429, 4503}
    missing = [code for code in sorted(codes) if f"`{code}`" not in text]
    assert not missing, f"close codes missing from the README: {missing}"
