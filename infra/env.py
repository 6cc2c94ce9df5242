"""Reading settings from the environment: sizes, durations, integers and lists, checked.

Every process builds one frozen settings struct at its composition root with
these parsers. A malformed value raises SettingsError naming the variable, so
a process fails at start, never later.
"""

from __future__ import annotations

import re

MiB = 1024 * 1024
GiB = 1024 * MiB
TiB = 1024 * GiB

_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 1024, "M": MiB, "G": GiB, "T": TiB}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_SECONDS = {"ms": 0.001, "": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class SettingsError(ValueError):
    """An environment variable has a value that cannot be used."""


def size(value: str, name: str) -> int:
    match = _SIZE.match(value)
    if match is None:
        raise SettingsError(f"{name}={value!r} is not a size (e.g. 524288000, 500MiB, 5TiB)")
    unit = (match.group(2) or "").upper()[:1]
    return int(match.group(1)) * _UNITS[unit if unit != "B" else ""]


def duration(value: str, name: str) -> float:
    match = _DURATION.match(value)
    if match is None:
        raise SettingsError(f"{name}={value!r} is not a duration (e.g. 3600, 90s, 1h)")
    return float(match.group(1)) * _SECONDS[match.group(2) or ""]


def integer(value: str, name: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise SettingsError(f"{name}={value!r} is not an integer") from None


def word_list(value: str, name: str) -> tuple[str, ...]:
    words = tuple(w.strip().lower().lstrip(".") for w in value.split(",") if w.strip())
    if not words:
        raise SettingsError(f"{name} names no value")
    return words
