"""Log formatting: text with key=value fields, JSON on request, credentials scrubbed from both."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from infra.logs import FIELDS, JsonFormatter, TextFormatter, configure, scrub
from ingest.auth import issue_token

TOKEN = issue_token("s" * 40, "someone", ttl_seconds=60)


def _record(message: str, *args: object, **fields: object) -> logging.LogRecord:
    record = logging.LogRecord("ingest.test", logging.INFO, __file__, 1, message, args, None)
    setattr(record, FIELDS, fields)
    return record


@pytest.mark.parametrize(
    "text",
    [
        f"GET /ws/upload-progress?token={TOKEN}&since=3",
        f"Authorization: Bearer {TOKEN}",
        f"authorization=bearer {TOKEN[:20]}",
        f"the token was {TOKEN}",
        f"access_token={TOKEN}",
    ],
)
def test_credentials_are_scrubbed(text: str) -> None:
    cleaned = scrub(text)
    assert TOKEN not in cleaned
    assert TOKEN[:20] not in cleaned
    assert "***" in cleaned


def test_ordinary_words_are_left_alone() -> None:
    text = 'a basic upload of 3 parts, max_token=5, WWW-Authenticate: Bearer realm="ingest"'
    assert scrub(text) == text


def test_text_lines_carry_the_fields_quoted_when_needed() -> None:
    line = TextFormatter().format(
        _record("upload %s done", "abc", session="abc", bytes=42, note="two words\nand a newline")
    )
    assert line.endswith('upload abc done session=abc bytes=42 note="two words\\nand a newline"')
    assert "\n" not in line


def test_json_lines_are_one_object_with_the_fields() -> None:
    record = _record("upload %s done", "abc", session="abc", bytes=42, path=f"/x?token={TOKEN}")
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "upload abc done"
    assert entry["level"] == "info"
    assert entry["logger"] == "ingest.test"
    assert entry["session"] == "abc"
    assert entry["bytes"] == 42
    assert entry["path"] == "/x?token=***"
    assert entry["time"].endswith("+00:00")


def test_a_traceback_stays_in_the_json_object() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "failed", (), exc_info=sys.exc_info()
        )
    entry = json.loads(JsonFormatter().format(record))
    assert "ValueError: boom" in entry["exception"]


def test_the_format_and_level_are_picked() -> None:
    root = logging.getLogger()
    kept = list(root.handlers), root.level
    try:
        configure(level="warning", log_format="json")
        assert isinstance(root.handlers[-1].formatter, JsonFormatter)
        assert root.level == logging.WARNING
        configure()
        assert isinstance(root.handlers[-1].formatter, TextFormatter)
        assert root.level == logging.INFO
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in kept[0]:
            root.addHandler(handler)
        root.setLevel(kept[1])
