"""Printing result tables and writing result files into the output directory.

A result file is `<out>/<benchmark>.json`, or `<out>/<benchmark>-<label>.json`
with a label (`--label before`), holding when it ran, the machine and
versions, the configuration, the summary table and every raw run. Writing
raises OSError when the directory cannot be written.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.stats import Spread


def result_path(out: Path, benchmark: str, label: str | None, suffix: str = ".json") -> Path:
    stem = benchmark if not label else f"{benchmark}-{label}"
    return out / f"{stem}{suffix}"


def write_result(
    out: Path, benchmark: str, label: str | None, payload: dict[str, Any]
) -> dict[str, Any]:
    """Write `payload` (plus benchmark name, label and time); return it as read back from JSON."""
    document = {
        "benchmark": benchmark,
        "label": label,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **payload,
    }
    out.mkdir(parents=True, exist_ok=True)
    path = result_path(out, benchmark, label)
    text = json.dumps(document, indent=2, default=_jsonable)
    path.write_text(text + "\n")
    print(f"raw figures: {path}")
    # What was written, as plain JSON values: plots and tests read exactly that.
    written: dict[str, Any] = json.loads(text)
    return written


def _jsonable(value: object) -> object:
    if isinstance(value, Spread):
        return value.as_json()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print(f"\n{title}")
    print("  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
    sys.stdout.flush()


def _cell(value: object) -> str:
    if isinstance(value, Spread):
        return value.show()
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def describe_machine(environment: dict[str, Any]) -> str:
    machine, versions = environment["machine"], environment["versions"]
    memory = machine["memory_bytes"] / 2**30 if machine["memory_bytes"] else float("nan")
    return (
        f"machine: {machine['cores']} cores, {memory:.1f} GiB, {machine['cpu_model']}; "
        f"python {versions['python']}, aiohttp {versions['aiohttp']}, "
        f"aiobotocore {versions['aiobotocore']}, aiokafka {versions['aiokafka']}, "
        f"Kafka {versions['kafka']}, MinIO {versions['minio']}"
    )


def size_label(size: int) -> str:
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"
