"""JSON request bodies decoded into their msgspec types, refusing hostile input as 400.

How it fails: bytes that are not UTF-8, and values nested deeper than `MAX_DEPTH`
anywhere in the document, raise InvalidRequest (`details.field` names the
top-level field holding the nesting); a body that does not match its type raises
msgspec's ValidationError, which `ingest.http.errors` answers 400 naming the field.
Nothing here can raise anything else on any input: decoding never recurses in
Python, and msgspec's own recursion guard (about 1,000 levels) is caught.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec

from ingest.errors import InvalidRequest

T = TypeVar("T")

MAX_DEPTH = 32
"""Levels of nesting allowed inside one field's value (a field's own object is level 1).

Free-form fields (`metadata`, `dashboard_context`) are stored and published as
they are; consumers that walk them recursively must not be handed a bomb.
"""

# An object key, any other JSON string (with its escapes), or one bracket: what a
# nesting scan needs to look at (brackets inside strings are not structure).
_TOKENS = re.compile(rb'(?P<key>"(?:[^"\\]|\\.)*")\s*:|"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def decode_body(raw: bytes, kind: type[T]) -> T:
    """`raw` decoded as `kind`; InvalidRequest on bad UTF-8 or nesting past `MAX_DEPTH`."""
    try:
        value = msgspec.json.decode(raw, type=kind)
    except UnicodeDecodeError as error:
        raise InvalidRequest(
            f"the body is not valid UTF-8 (byte {error.start})", details={"position": error.start}
        ) from None
    except RecursionError:
        raise _too_deep(_deep_field(raw)) from None
    if isinstance(value, msgspec.Struct):
        for field in value.__struct_fields__:
            if _depth(getattr(value, field)) > MAX_DEPTH:
                raise _too_deep(field)
    return value


def _too_deep(field: str | None) -> InvalidRequest:
    where = f"`{field}`" if field else "the body"
    return InvalidRequest(
        f"{where} is nested more than {MAX_DEPTH} levels deep",
        details={"field": field, "max_depth": MAX_DEPTH} if field else {"max_depth": MAX_DEPTH},
    )


def _depth(value: Any) -> int:
    """How deeply `value` nests lists and objects, counted without recursion (0 for a scalar)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, level + 1) for child in children)
    return deepest


def _deep_field(raw: bytes) -> str | None:
    """The top-level field whose value nests past `MAX_DEPTH`, scanned token by token.

    Only reached for a body msgspec could not decode for its depth, so at most the
    request size limit of tokens; it stops at the first level too deep.
    """
    depth = 0
    key: bytes | None = None
    for match in _TOKENS.finditer(raw):
        token = match.group()
        if match.group("key") is not None:
            if depth == 1:
                key = match.group("key")
        elif token in (b"{", b"["):
            depth += 1
            if depth > MAX_DEPTH + 1:
                return _name(key)
        elif token in (b"}", b"]"):
            depth -= 1
    return None


def _name(key: bytes | None) -> str | None:
    if key is None:
        return None
    try:
        name = msgspec.json.decode(key)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None
    return name if isinstance(name, str) else None
