"""Which video container a body is, judged from its first bytes (magic numbers).

`detect_format` never raises: it returns None for anything it does not know.
`resolve_format` is the judgement: it raises `UnsupportedFormat` (415) for a
body that is not a video container, that is a container other than the one the
client declared, or that is not an allowed format. It runs on the first
`HEAD_BYTES` of a body, before any part is stored.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from ingest.errors import UnsupportedFormat

HEAD_BYTES: Final = 64
"""How many leading bytes `detect_format` wants; fewer only when the body is shorter."""

_EBML_MAGIC: Final = b"\x1a\x45\xdf\xa3"
_EBML_DOCTYPE_ID: Final = b"\x42\x82"

# Formats that share a container structure: a client that says mp4 for a
# QuickTime-branded file (or mkv for a WebM one) made an honest naming mistake.
_FAMILY: Final[dict[str, str]] = {
    "mp4": "isobmff",
    "mov": "isobmff",
    "avi": "riff",
    "mkv": "matroska",
    "webm": "matroska",
}
_ALIASES: Final[dict[str, str]] = {
    "m4v": "mp4",
    "qt": "mov",
    "quicktime": "mov",
    "matroska": "mkv",
}

CONTENT_TYPES: Final[dict[str, str]] = {
    "mp4": "video/mp4",
    "mov": "video/quicktime",
    "avi": "video/x-msvideo",
    "mkv": "video/x-matroska",
    "webm": "video/webm",
}
"""The media type an object of each format is stored with."""


def detect_format(head: bytes) -> str | None:
    """The container format of a body starting with `head`: mp4, mov, avi, mkv, webm or None."""
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return "mov" if head[8:12] == b"qt  " else "mp4"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    if head[:4] == _EBML_MAGIC:
        return "webm" if _ebml_doctype(head) == "webm" else "mkv"
    return None


def normalize_format(name: str | None) -> str | None:
    """A format name as the service spells it: lower case, no dot, aliases resolved."""
    if name is None:
        return None
    cleaned = name.strip().lower().lstrip(".")
    return _ALIASES.get(cleaned, cleaned) or None


def resolve_format(detected: str | None, *, declared: str | None, allowed: Iterable[str]) -> str:
    """The format to record for a body, or UnsupportedFormat.

    A declared format in the same family as the detected one is overruled by the
    bytes; one from another family is refused, since the client is not sending
    what it said it would.
    """
    allowed_formats = tuple(f for f in (normalize_format(a) for a in allowed) if f)
    details: dict[str, object] = {"detected": detected, "allowed_formats": list(allowed_formats)}
    if detected is None:
        raise UnsupportedFormat(
            "the body does not start like a video container (mp4, mov, avi, mkv, webm)",
            details=details,
        )
    wanted = normalize_format(declared)
    if wanted is not None and _FAMILY.get(wanted) != _FAMILY[detected]:
        raise UnsupportedFormat(
            f"the upload was declared as {wanted} but the body is {detected}",
            details={**details, "declared": wanted},
        )
    if detected not in allowed_formats:
        raise UnsupportedFormat(
            f"{detected} is not an allowed format (allowed: {', '.join(allowed_formats)})",
            details=details,
        )
    return detected


def _ebml_doctype(head: bytes) -> str | None:
    """The DocType string of an EBML header, when it lies within `head`."""
    at = head.find(_EBML_DOCTYPE_ID, len(_EBML_MAGIC))
    if at < 0 or at + 2 >= len(head):
        return None
    size_at = at + 2
    first = head[size_at]
    if first == 0:
        return None
    # EBML sizes are variable-length integers: the count of leading zero bits
    # of the first byte says how many more bytes follow.
    width = 8 - first.bit_length() + 1
    if size_at + width > len(head):
        return None
    length = first & ((1 << (8 - width)) - 1)
    for byte in head[size_at + 1 : size_at + width]:
        length = (length << 8) | byte
    start = size_at + width
    value = head[start : start + length]
    return value.rstrip(b"\x00").decode("ascii", "replace").lower()
