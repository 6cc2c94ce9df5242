"""What a tus client's Upload-Metadata says about the upload, read as session fields.

tus clients name the file `filename` (Uppy, tus-js-client) or `name`, and its
media type `filetype` or `type`; `priority` and `auto_analyze` are this
service's own keys. A media type of a known video container names its format,
as `file_format` does for a session; any other says nothing about it. Whether
the named format, or the file name's suffix, is allowed is the upload
admission's to say (`ingest.usecases.admission`), as for every way in. Unknown
keys are kept as the upload's metadata. Reading never fails.
"""

from __future__ import annotations

from dataclasses import dataclass

from ingest.pipeline.container import CONTENT_TYPES

_BY_CONTENT_TYPE = {content_type: fmt for fmt, content_type in CONTENT_TYPES.items()}
_FALSE = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True)
class Declared:
    filename: str | None
    file_format: str | None
    """The format the media type names, if it is a known video container's."""
    priority: int
    auto_analyze: bool


def declared_from(metadata: dict[str, str]) -> Declared:
    content_type = metadata.get("filetype") or metadata.get("type") or ""
    return Declared(
        filename=metadata.get("filename") or metadata.get("name") or None,
        file_format=_BY_CONTENT_TYPE.get(content_type.split(";")[0].strip().lower()),
        priority=_priority(metadata.get("priority")),
        auto_analyze=(metadata.get("auto_analyze") or "true").strip().lower() not in _FALSE,
    )


def _priority(value: str | None) -> int:
    try:
        priority = int(value) if value is not None else 5
    except ValueError:
        return 5
    return priority if 1 <= priority <= 10 else 5
