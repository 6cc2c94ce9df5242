"""Consumer throughput: a placeholder that says honestly that there is nothing to measure yet.

The quota, detection and fan-out consumers are not written yet, so this prints
that and returns without figures (never made-up ones). When a consumer package
appears it still reports no figures until a benchmark for it is written here.
It does not fail.
"""

from __future__ import annotations

import importlib.util
from typing import Any

CONSUMERS = ("consumers.quota", "consumers.detection", "consumers.fanout")


def present() -> list[str]:
    found = []
    for name in CONSUMERS:
        try:
            if importlib.util.find_spec(name) is not None:
                found.append(name)
        except ModuleNotFoundError:
            continue
    return found


def run() -> dict[str, Any]:
    found = present()
    if found:
        message = (
            f"consumers: {', '.join(found)} exist, but no benchmark is written for them yet; "
            "no figures."
        )
    else:
        message = (
            "consumers: there are no consumers yet (looked for "
            f"{', '.join(CONSUMERS)}); nothing to measure, no figures."
        )
    print(message)
    return {"benchmark": "consumers", "skipped": message, "present": found}
