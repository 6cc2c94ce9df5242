"""The fixed cost of a small tus PATCH, measured by `fixedcost` beside its one-shot figures.

Per server, three things are timed: a PATCH of `PATCH_SIZE` bytes onto an
open tus upload (whose first bytes were sent untimed, so the file is judged
a video and announced before the timing starts; every timed PATCH then adds
a tail segment, the way small PATCHes are kept), the same with `Expect:
100-continue` onto another such upload (the server checks the PATCH before
the body comes), and a new tus upload of a small file sent in one PATCH (creation and
PATCH timed together, the upload completing). Every file is distinct, so none is
answered as a duplicate. `close` terminates the open uploads (which removes
what they stored) and returns the objects of the completed ones, to delete.

How it fails: RuntimeError for any answer but the one expected (a latency
figure from a broken run would be meaningless).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from benchmarks.client import stored_key, tus_create, tus_patch, tus_upload
from benchmarks.stats import percentile, spread
from benchmarks.workload import KiB

PATCH_SIZE = KiB


MEASURES = {
    "patch": "tus-patch",
    "expect_patch": "tus-expect-patch",
    "create_patch": "tus-create-patch",
}
"""The name of each measure in the summary, and the prefix of its samples' path."""

TABLE_HEADERS = [
    "path",
    *(f"{what} {p}" for what in ("PATCH", "Expect PATCH", "create+PATCH") for p in ("p50", "p99")),
]


def summarize(ms: Callable[[str], list[float]], servers: list[str]) -> list[dict[str, Any]]:
    """One row per server: p50/p99 of each measure; `ms(path)` gives a path's samples in ms."""
    rows = []
    for server in servers:
        row: dict[str, Any] = {"path": server, "size": PATCH_SIZE}
        for name, prefix in MEASURES.items():
            times = ms(f"{prefix}-{server}")
            row |= {
                f"{name}_count": len(times),
                f"{name}_p50_ms": percentile(times, 50),
                f"{name}_p99_ms": percentile(times, 99),
                f"{name}_ms": spread(times),
            }
        rows.append(row)
    return rows


def table_rows(rows: list[dict[str, Any]]) -> list[list[object]]:
    return [
        [
            row["path"],
            *(f"{row[f'{name}_{p}_ms']:.1f}" for name in MEASURES for p in ("p50", "p99")),
        ]
        for row in rows
    ]


def open_length(count: int) -> int:
    """An open upload's length: room for its first PATCH, the warm-up and `count` timed
    PATCHes, and a byte more, so it never completes."""
    return (count + 2) * PATCH_SIZE + 1


@dataclass
class _Open:
    url: str
    offset: int = 0


class TusPaths:
    """The tus measures on one server."""

    def __init__(self, http: aiohttp.ClientSession, url: str, auth: dict[str, str]) -> None:
        self._http = http
        self._url = url
        self._endpoint = f"{url}/v1/tus/"
        self._auth = auth
        self._open: dict[bool, _Open] = {}
        """The open upload of the PATCHes without and with Expect: one each, so both see
        the same tail segments (a PATCH merges some of them, every other time)."""
        self._completed: list[str] = []

    async def open(self, length: int, first: Callable[[], bytes]) -> None:
        """Create the uploads the timed PATCHes go to, and send each `first()` (untimed)."""
        for expect in (False, True):
            url = await tus_create(self._http, self._endpoint, length, self._auth)
            self._open[expect] = _Open(url)
            await self._send(first(), expect=expect)

    async def patch(self, data: bytes, *, expect: bool = False) -> float:
        """Seconds of one PATCH of `data` onto an open upload (`Expect: 100-continue` first
        when `expect`)."""
        started = time.perf_counter()
        await self._send(data, expect=expect)
        return time.perf_counter() - started

    async def create_and_patch(self, body: bytes) -> float:
        """Seconds to create an upload of `body` and send it whole in one PATCH."""
        started = time.perf_counter()
        url = await tus_upload(self._http, self._endpoint, len(body), body, self._auth)
        elapsed = time.perf_counter() - started
        self._completed.append(url)
        return elapsed

    async def close(self) -> list[str]:
        """Terminate the open uploads; the object keys of the completed ones."""
        headers = {"Tus-Resumable": "1.0.0", **self._auth}
        while self._open:
            _, upload = self._open.popitem()
            async with self._http.delete(upload.url, headers=headers) as deleted:
                if deleted.status != 204:
                    raise RuntimeError(f"terminating {upload.url}: {await deleted.text()}")
        keys = [
            await stored_key(self._http, self._url, url.rsplit("/", 1)[-1], self._auth)
            for url in self._completed
        ]
        self._completed.clear()
        return keys

    async def _send(self, data: bytes, *, expect: bool) -> None:
        upload = self._open[expect]
        end = upload.offset + len(data)
        await tus_patch(self._http, upload.url, upload.offset, data, end, self._auth, expect=expect)
        upload.offset = end
