"""CloudEvents 1.0 in Kafka binary content mode: events to records and back.

The record value is the event's JSON (with its `type` tag); the CloudEvents
attributes travel as `ce_*` headers beside `content-type`. The record key is
`schemas.events.key_of(event)`.

`decode` returns None, logging one INFO line, for a `ce_type` this version does
not know: a newer producer may be ahead of this consumer, and skipping is the
agreed behaviour. Everything else it cannot accept (no `ce_type`, another spec
version, a payload that does not match its type's schema, headers that disagree
with the payload) raises `InvalidEvent`, so a consumer can dead-letter it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Final, NamedTuple

import msgspec

from schemas.events import EVENT_TYPES, Event, event_type, key_of, schema_uri, subject_of

__all__ = [
    "CONTENT_TYPE",
    "SPEC_VERSION",
    "EncodedEvent",
    "InvalidEvent",
    "decode",
    "encode",
    "headers_dict",
]

log = logging.getLogger(__name__)

SPEC_VERSION: Final = "1.0"
CONTENT_TYPE: Final = "application/json"

_encoder: Final = msgspec.json.Encoder()
# One decoder for the whole union: msgspec picks the Struct from the `type` tag.
_decoder: Final[msgspec.json.Decoder[Event]] = msgspec.json.Decoder(Event)


class InvalidEvent(ValueError):
    """A record that claims to be an event this version knows, but is not a valid one."""

    def __init__(self, message: str, *, event_type: str | None = None) -> None:
        super().__init__(message)
        self.event_type = event_type


class EncodedEvent(NamedTuple):
    """What to hand to the Kafka producer: `send(topic, value, key=, headers=)`."""

    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def encode(event: Event, *, source: str) -> EncodedEvent:
    """The Kafka record of an event; `source` is the CloudEvents source (a URI-reference).

    Raises ValueError for an empty source.
    """
    if not source:
        raise ValueError("a CloudEvents source must not be empty")
    ce_type = event_type(event)
    headers = [
        ("ce_specversion", SPEC_VERSION),
        ("ce_id", event.event_id),
        ("ce_source", source),
        ("ce_type", ce_type),
        ("ce_time", _rfc3339(event)),
        ("ce_subject", subject_of(event)),
        ("ce_dataschema", schema_uri(ce_type)),
        ("content-type", CONTENT_TYPE),
    ]
    return EncodedEvent(
        key=key_of(event),
        value=_encoder.encode(event),
        headers=[(name, text.encode()) for name, text in headers],
    )


def decode(value: bytes, headers: Sequence[tuple[str, bytes]]) -> Event | None:
    """The event in a Kafka record, or None when its type is unknown here.

    Raises InvalidEvent when the record is not a valid event of a known type.
    """
    attributes = headers_dict(headers)
    ce_type = attributes.get("ce_type")
    if ce_type is None:
        raise InvalidEvent("record has no ce_type header; not a binary-mode CloudEvent")
    if ce_type not in EVENT_TYPES:
        # Checked before decoding: msgspec would reject the unknown tag with the
        # same ValidationError as a broken payload, and these two must differ.
        log.info(
            "skipping event of unknown type %r (ce_id=%s); it may come from a newer producer",
            ce_type,
            attributes.get("ce_id"),
        )
        return None
    specversion = attributes.get("ce_specversion")
    if specversion != SPEC_VERSION:
        raise InvalidEvent(
            f"ce_specversion is {specversion!r}, expected {SPEC_VERSION!r}", event_type=ce_type
        )
    try:
        event = _decoder.decode(value)
    except msgspec.DecodeError as error:  # ValidationError is a DecodeError too
        raise InvalidEvent(f"invalid {ce_type} payload: {error}", event_type=ce_type) from error
    payload_type = event_type(event)
    if payload_type != ce_type:
        raise InvalidEvent(
            f"ce_type header {ce_type!r} disagrees with the payload's type {payload_type!r}",
            event_type=ce_type,
        )
    # A payload without event_id would get a fresh random one on decode, which
    # would defeat every consumer's de-duplication; the header is the reference.
    if event.event_id != attributes.get("ce_id"):
        raise InvalidEvent(
            f"ce_id header {attributes.get('ce_id')!r} disagrees with the payload's "
            f"event_id {event.event_id!r}",
            event_type=ce_type,
        )
    return event


def headers_dict(headers: Iterable[tuple[str, bytes | None]]) -> dict[str, str]:
    """Kafka headers as text, for reading attributes and for logs.

    A repeated header keeps its last value (as Kafka's own clients read it), a
    header with a null value is left out, and bytes that are not UTF-8 are
    replaced rather than raising, so this never fails on a bad record.
    """
    return {name: raw.decode("utf-8", errors="replace") for name, raw in headers if raw is not None}


def _rfc3339(event: Event) -> str:
    # The payload's own encoding of occurred_at (UTC, "Z"), so ce_time and the
    # payload never disagree in precision or format.
    return _encoder.encode(event.occurred_at).decode()[1:-1]
