"""Log lines of every process: readable text by default, one JSON object a line on request.

`INGEST_LOG_FORMAT=json` picks JSON (for a log shipper), anything else or unset
text; `INGEST_LOG_LEVEL` the level (INFO); the command line reads both. A call
passes structured fields as `extra={"fields": {...}}`: text appends them as
`key=value`, JSON as keys of the object. Both formatters scrub credentials
from the whole line, whoever logged it (a library echoing a URL or a header
included): a `token=` query value, a `Bearer` credential and anything shaped
like a JWT become `***`. Formatting never raises: a field that JSON cannot
encode is written as its str.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

FIELDS = "fields"
MASK = "***"

_SECRETS = (
    # A JWT anywhere: three base64url parts, the first an encoded JSON object ("eyJ").
    (re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), MASK),
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{8,}"), rf"\1 {MASK}"),
    (
        re.compile(r"(?i)([?&;]|\b)((?:access_)?token|jwt|api_key|password)=[^&\s\"']*"),
        rf"\1\2={MASK}",
    ),
)


def scrub(text: str) -> str:
    """`text` with every credential it shows replaced by ***."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def fields_of(record: logging.LogRecord) -> Mapping[str, Any]:
    fields = getattr(record, FIELDS, None)
    return fields if isinstance(fields, Mapping) else {}


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message key=value ...`, values quoted when they hold spaces."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = " ".join(f"{key}={_text_value(value)}" for key, value in fields_of(record).items())
        if extra:
            head, newline, rest = line.partition("\n")  # a traceback stays below the line
            line = f"{head} {extra}{newline}{rest}"
        return scrub(line)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, the fields, and any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in fields_of(record).items():
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return scrub(json.dumps(entry, default=str, ensure_ascii=False))


def configure(*, level: str = "INFO", log_format: str = "text") -> None:
    """Route the root logger to stderr: `log_format` json or text, at `level` (a name)."""
    level = level.upper()
    as_json = log_format.strip().lower() == "json"
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if as_json else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, logging.getLevelName(level)))


def _text_value(value: object) -> str:
    text = "-" if value is None else str(value)
    if not text or any(c.isspace() or c in "\"'=" for c in text):
        return json.dumps(text, ensure_ascii=False)  # quoted, newlines escaped: one line
    return text
