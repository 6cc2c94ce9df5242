"""Whether today's event schemas may replace the last release's without breaking a consumer.

`schemas/released/` keeps the JSON Schemas as they were published at the last
release. `breaking_changes` compares them with what the types generate now,
event type by event type and field by field, in both directions, as a schema
registry in FULL compatibility mode would:

* backward: a consumer built now must read the records of the release that are
  still in the topics (so no new required field, no narrowed type, no enum
  value removed);
* forward: a consumer built against the release must read what is published
  now (so no field or event type removed, no widened type, no enum value added).

Annotations (`title`, `description`, `default`, `examples`) may change freely.
Each problem is one line naming the event type and the field. `python -m
schemas.compatibility` prints them and exits 1; with `--release` it refreshes
the snapshot instead, and only when there are none. A schema whose references
cannot be followed (a cycle, or a target outside its `$defs`; the generated
ones have neither) raises ValueError rather than being judged half-read.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from schemas.jsonschema import UNION_FILE, generate, write

__all__ = ["RELEASED_DIR", "breaking_changes", "check", "load", "main"]

RELEASED_DIR: Final = Path(__file__).parent / "released"

Schema = Mapping[str, Any]

_OLD_RECORDS: Final = "records already in the topics"
_OLD_CONSUMERS: Final = "consumers of the release"
# Bounds that narrow what a schema accepts as they grow (lower) or shrink (upper).
_LOWER_BOUNDS: Final = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")
_UPPER_BOUNDS: Final = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")
# Constraints that cannot be ordered: any change may refuse values in both directions.
_EXACT: Final = ("pattern", "format", "multipleOf", "uniqueItems", "additionalProperties")
_ANNOTATIONS: Final = frozenset({"title", "description", "default", "examples"})


def load(directory: Path) -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema, for every `*.json` file in `directory`."""
    return {
        path.name: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(directory.glob("*.json"))
    }


def breaking_changes(released: Mapping[str, Schema], current: Mapping[str, Schema]) -> list[str]:
    """Every change from `released` to `current` (file name -> schema) that breaks a consumer."""
    problems: list[str] = []
    for name in sorted(released):
        if name == UNION_FILE:
            continue  # the union of the per-type files, compared through them
        tag = name.removesuffix(".json")
        if name not in current:
            problems.append(f"{tag}: event type removed; {_OLD_CONSUMERS} wait for it")
            continue
        old, new = _inlined(released[name]), _inlined(current[name])
        problems.extend(f"{tag}: {problem}" for problem in _compare("", old, new))
    return problems


def check(released_dir: Path = RELEASED_DIR) -> list[str]:
    """The breaking changes from the snapshot in `released_dir` to the types of now.

    Raises FileNotFoundError when there is no snapshot to compare with.
    """
    if not released_dir.is_dir():
        raise FileNotFoundError(f"no released snapshot in {released_dir}")
    return breaking_changes(load(released_dir), generate())


def _inlined(document: Schema) -> Schema:
    """The document's root with every `#/$defs/` reference replaced by its definition."""
    definitions: Mapping[str, Schema] = document.get("$defs", {})

    def inline(node: Any, expanding: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [inline(item, expanding) for item in node]
        if not isinstance(node, dict):
            return node
        reference = node.get("$ref")
        if reference is not None:
            name = reference.removeprefix("#/$defs/")
            if name in expanding or name not in definitions:
                # The event types are trees; a cycle or a foreign reference is a generator bug.
                raise ValueError(f"cannot inline the reference {reference!r}")
            return inline(definitions[name], (*expanding, name))
        return {key: inline(value, expanding) for key, value in node.items() if key != "$defs"}

    inlined: Schema = inline(document, ())
    return inlined


def _compare(path: str, old: Schema, new: Schema) -> Iterator[str]:
    where = f"field `{path}`" if path else "the payload"
    old_kinds, new_kinds = _alternatives(old), _alternatives(new)
    for kind in old_kinds:
        if not _covered(kind, new_kinds):
            yield f"{where} narrowed: {_describe(kind)} is refused, and {_OLD_RECORDS} hold it"
    for kind in new_kinds:
        if not _covered(kind, old_kinds):
            yield f"{where} widened: {_describe(kind)} is accepted, and {_OLD_CONSUMERS} refuse it"
    for kind in old_kinds.keys() & new_kinds.keys():
        yield from _compare_constraints(where, old_kinds[kind], new_kinds[kind])
        yield from _compare_contents(path, old_kinds[kind], new_kinds[kind])


def _compare_constraints(where: str, old: Schema, new: Schema) -> Iterator[str]:
    for bound in _LOWER_BOUNDS + _UPPER_BOUNDS:
        before, after = old.get(bound), new.get(bound)
        if before == after:
            continue
        tighter = after is not None and (
            before is None or (after > before if bound in _LOWER_BOUNDS else after < before)
        )
        if tighter:
            yield f"{where} narrowed: {bound} {before} -> {after}; {_OLD_RECORDS} may not fit"
        else:
            yield f"{where} widened: {bound} {before} -> {after}; {_OLD_CONSUMERS} refuse more"
    for constraint in _EXACT:
        before, after = old.get(constraint), new.get(constraint)
        if before != after:
            yield f"{where} changed: {constraint} {before!r} -> {after!r}; both sides may refuse"


def _compare_contents(path: str, old: Schema, new: Schema) -> Iterator[str]:
    if "items" in old or "items" in new:
        yield from _compare(f"{path}[]", old.get("items", {}), new.get("items", {}))
    old_fields: Mapping[str, Schema] = old.get("properties", {})
    new_fields: Mapping[str, Schema] = new.get("properties", {})
    old_required, new_required = set(old.get("required", [])), set(new.get("required", []))
    added = [name for name in new_fields if name not in old_fields]
    for name, old_field in old_fields.items():
        field = f"{path}.{name}" if path else name
        if name not in new_fields:
            hint = _rename_hint(old_field, {other: new_fields[other] for other in added})
            yield f"field `{field}` removed; {_OLD_CONSUMERS} read it{hint}"
            continue
        if name in new_required - old_required:
            yield f"field `{field}` became required; {_OLD_RECORDS} may lack it"
        if name in old_required - new_required:
            yield f"field `{field}` is no longer required; {_OLD_CONSUMERS} expect it"
        yield from _compare(field, old_field, new_fields[name])
    for name in added:
        if name in new_required:
            field = f"{path}.{name}" if path else name
            yield f"required field `{field}` added; {_OLD_RECORDS} lack it (give it a default)"


def _rename_hint(removed: Schema, added: Mapping[str, Schema]) -> str:
    twins = [name for name, schema in added.items() if _shape(schema) == _shape(removed)]
    return f" (renamed to `{twins[0]}`?)" if len(twins) == 1 else ""


def _shape(schema: Schema) -> str:
    """The schema without its annotations, as comparable text."""
    return json.dumps(_without_annotations(schema), sort_keys=True)


def _without_annotations(node: Any) -> Any:
    if isinstance(node, list):
        return [_without_annotations(item) for item in node]
    if isinstance(node, dict):
        return {k: _without_annotations(v) for k, v in node.items() if k not in _ANNOTATIONS}
    return node


def _alternatives(schema: Schema) -> dict[tuple[str, str], Schema]:
    """What a schema accepts, split into kinds: each JSON type, and each enum value on its own."""
    kinds: dict[tuple[str, str], Schema] = {}
    branches = schema.get("anyOf") or schema.get("oneOf")
    if branches:
        for branch in branches:
            kinds.update(_alternatives(branch))
    elif "enum" in schema or "const" in schema:
        values = schema["enum"] if "enum" in schema else [schema["const"]]
        for value in values:
            kinds[("value", json.dumps(value, sort_keys=True))] = schema
    elif "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        for name in types:
            kinds[(name, "")] = schema
    else:
        kinds[("any", "")] = schema
    return kinds


def _covered(kind: tuple[str, str], kinds: Mapping[tuple[str, str], Schema]) -> bool:
    """Whether a value of this kind is accepted by one of `kinds`."""
    if kind in kinds or ("any", "") in kinds:
        return True
    if kind == ("integer", "") and ("number", "") in kinds:
        return True
    return kind[0] == "value" and (_json_type(json.loads(kind[1])), "") in kinds


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _describe(kind: tuple[str, str]) -> str:
    if kind[0] == "value":
        return f"the value {kind[1]}"
    if kind[0] in {"null", "any"}:
        return kind[0]
    return f"{'an' if kind[0][0] in 'aeiou' else 'a'} {kind[0]}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m schemas.compatibility",
        description="Check the event schemas against the last release; --release refreshes it.",
    )
    parser.add_argument("--released", type=Path, default=RELEASED_DIR, help="default: %(default)s")
    parser.add_argument(
        "--release",
        action="store_true",
        help="after a clean check, make the schemas of now the released snapshot",
    )
    args = parser.parse_args(argv)
    try:
        problems = check(args.released)
    except FileNotFoundError as missing:
        if not args.release:
            print(f"{missing}; the first one is made with --release", file=sys.stderr)
            return 1
        problems = []  # the first release: nothing to stay compatible with
    for problem in problems:
        print(f"breaking: {problem}", file=sys.stderr)
    if problems:
        return 1
    if args.release:
        for path in write(args.released):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
