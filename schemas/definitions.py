"""The JSON Schema definitions of the event types, adjusted alike in every published document.

msgspec generates them from the Structs; `publish` then makes two adjustments so
that the published contract describes the wire rather than the Python defaults,
and both `schemas/json/` and the AsyncAPI document go through it. Pure functions
over dicts: nothing here fails on a valid msgspec schema.
"""

from __future__ import annotations

import inspect
from typing import Any, Final

from schemas.events import EVENT_TYPES

__all__ = ["ALWAYS_SENT", "publish"]

# The Structs default these so producers need not fill them in, which makes
# msgspec list them as optional. On the wire they are always present (decode
# rejects an event_id that is not the ce_id), so the published contract says so.
ALWAYS_SENT: Final = ("event_id", "occurred_at")


def publish(definitions: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Adjust msgspec's definitions (name -> schema) in place for publishing; returns them."""
    event_names = {cls.__name__ for cls in EVENT_TYPES.values()}
    for name, definition in definitions.items():
        # msgspec copies class docstrings as they are compiled, and Python 3.13
        # started stripping their indentation: normalise, or the published files
        # would depend on the interpreter that generated them.
        if "description" in definition:
            definition["description"] = inspect.cleandoc(definition["description"])
        if name in event_names:
            required: list[str] = definition.setdefault("required", [])
            required.extend(field for field in ALWAYS_SENT if field not in required)
    return definitions
