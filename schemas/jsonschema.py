"""JSON Schemas of the events, generated from the msgspec types; the generator command.

`generate()` builds them in memory; `write()` and `python -m schemas.jsonschema`
(re)write the published copies in `schemas/json/`, and the command also writes
the AsyncAPI document (`schemas/asyncapi.json`, see `schemas.asyncapi`). Both are
kept in git and compared with what the types generate by unit tests. `--check`
exits with status 1 and names the files when the published copies have drifted,
instead of writing.

One file per event type, `<type>.json`, whose `$id` is the URI a record's
`ce_dataschema` header points at, plus `events.json` for the whole union.
The live service's WebSocket messages and progress body are in
`schemas/json/live/` (`schemas.live`), generated and checked the same way.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import msgspec

from schemas import asyncapi
from schemas.definitions import publish
from schemas.events import EVENT_TYPES, SCHEMA_URI_PREFIX, Event, schema_uri
from schemas.live import LIVE_SCHEMA_FILES

__all__ = [
    "JSON_DIR",
    "LIVE_DIR",
    "UNION_FILE",
    "drift",
    "generate",
    "generate_live",
    "main",
    "render",
    "write",
]

JSON_DIR: Final = Path(__file__).parent / "json"
LIVE_DIR: Final = JSON_DIR / "live"
UNION_FILE: Final = "events.json"

_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"


def generate() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema, for every event type and for the union."""
    files: dict[str, dict[str, Any]] = {}
    for tag, cls in EVENT_TYPES.items():
        files[f"{tag}.json"] = _published(msgspec.json.schema(cls), schema_uri(tag))
    files[UNION_FILE] = _published(msgspec.json.schema(Event), SCHEMA_URI_PREFIX + "events")
    return files


def generate_live() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema, for the live service's messages and bodies."""
    return {
        name: {
            "$schema": _DIALECT,
            "$id": f"{SCHEMA_URI_PREFIX}live.{name.removesuffix('.json')}",
            **msgspec.json.schema(cls),
        }
        for name, cls in LIVE_SCHEMA_FILES.items()
    }


def _published(schema: dict[str, Any], uri: str) -> dict[str, Any]:
    publish(schema.get("$defs", {}))
    return {"$schema": _DIALECT, "$id": uri, **schema}


def render(schema: dict[str, Any]) -> str:
    """The exact text of a published schema file."""
    return json.dumps(schema, sort_keys=True, indent=2) + "\n"


def drift(directory: Path = JSON_DIR, *, live: bool = False) -> list[str]:
    """Names of the files in `directory` that are missing, stale or no longer generated."""
    files = generate_live() if live else generate()
    expected = {name: render(schema) for name, schema in files.items()}
    present = {path.name for path in directory.glob("*.json")}
    wrong = [
        name
        for name, text in expected.items()
        if name not in present or (directory / name).read_text(encoding="utf-8") != text
    ]
    return sorted(wrong + [name for name in present if name not in expected])


def write(directory: Path = JSON_DIR, *, live: bool = False) -> list[Path]:
    """Write every schema into `directory`, deleting `*.json` files no longer generated.

    The directory belongs to the generator: a schema of a type that was removed
    must not stay published as if it were current.
    """
    directory.mkdir(parents=True, exist_ok=True)
    files = generate_live() if live else generate()
    for stale in directory.glob("*.json"):
        if stale.name not in files:
            stale.unlink()
    written = []
    for name, schema in sorted(files.items()):
        path = directory / name
        path.write_text(render(schema), encoding="utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m schemas.jsonschema", description=__doc__.splitlines()[0] if __doc__ else ""
    )
    parser.add_argument("--dir", type=Path, default=JSON_DIR, help="default: %(default)s")
    parser.add_argument(
        "--asyncapi", type=Path, default=asyncapi.ASYNCAPI_FILE, help="default: %(default)s"
    )
    parser.add_argument(
        "--check", action="store_true", help="report drift and exit 1 instead of writing"
    )
    args = parser.parse_args(argv)
    live_dir = args.dir / LIVE_DIR.name
    if args.check:
        wrong = [args.dir / name for name in drift(args.dir)]
        wrong += [live_dir / name for name in drift(live_dir, live=True)]
        if asyncapi.drift(args.asyncapi):
            wrong.append(args.asyncapi)
        for path in wrong:
            print(f"out of date: {path}", file=sys.stderr)
        return 1 if wrong else 0
    for path in [
        *write(args.dir),
        *write(live_dir, live=True),
        asyncapi.write(args.asyncapi),
    ]:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
