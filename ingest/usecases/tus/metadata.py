"""What a tus client's Upload-Metadata says about the upload, read as session fields.

tus clients name the file `filename` (Uppy, tus-js-client) or `name`, and its
media type `filetype` or `type`; `priority` and `auto_analyze` are this
service's own keys. A format the client names must be an allowed one
(FormatNotAllowed, 400, as for a session); a name that says nothing about the
format leaves it to the bytes. Unknown keys are kept as the upload's metadata.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from ingest.errors import FormatNotAllowed
from ingest.pipeline.container import CONTENT_TYPES, normalize_format

_BY_CONTENT_TYPE = {content_type: fmt for fmt, content_type in CONTENT_TYPES.items()}
_FALSE = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True)
class Declared:
    filename: str | None
    format: str | None
    priority: int
    auto_analyze: bool


def declared_from(metadata: dict[str, str], allowed: tuple[str, ...]) -> Declared:
    filename = metadata.get("filename") or metadata.get("name") or None
    fmt = _format_of(metadata.get("filetype") or metadata.get("type"), filename)
    if fmt is not None and fmt not in allowed:
        raise FormatNotAllowed(
            f"format {fmt!r} is not allowed; allowed: {', '.join(allowed)}",
            details={"field": "Upload-Metadata", "allowed_formats": list(allowed)},
        )
    return Declared(
        filename=filename,
        format=fmt,
        priority=_priority(metadata.get("priority")),
        auto_analyze=(metadata.get("auto_analyze") or "true").strip().lower() not in _FALSE,
    )


def _format_of(content_type: str | None, filename: str | None) -> str | None:
    """A known video format named by the media type or the file name's suffix, else None."""
    if content_type:
        fmt = _BY_CONTENT_TYPE.get(content_type.split(";")[0].strip().lower())
        if fmt is not None:
            return fmt
    if filename:
        fmt = normalize_format(PurePosixPath(filename).suffix)
        if fmt in CONTENT_TYPES:
            return fmt
    return None


def _priority(value: str | None) -> int:
    try:
        priority = int(value) if value is not None else 5
    except ValueError:
        return 5
    return priority if 1 <= priority <= 10 else 5
