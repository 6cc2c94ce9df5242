"""Where an interrupted resumable upload lives on the server, remembered per local file.

A file is known by its fingerprint (server, absolute path, size, modification
time), so an edited file starts over instead of resuming onto other bytes. The
record is one small JSON file, rewritten atomically.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path


def default_state_file() -> Path:
    configured = os.environ.get("INGEST_CLIENT_STATE")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "ingest" / "resumable-uploads.json"


def fingerprint(server: str, path: Path) -> str:
    stat = path.stat()
    raw = f"{server.rstrip('/')}|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return hashlib.sha256(raw.encode()).hexdigest()


class ResumeStore:
    def __init__(self, state_file: Path) -> None:
        self._file = state_file
        self._lock = asyncio.Lock()

    async def get(self, key: str) -> str | None:
        async with self._lock:
            return (await asyncio.to_thread(self._read)).get(key)

    async def put(self, key: str, url: str) -> None:
        async with self._lock:
            entries = await asyncio.to_thread(self._read)
            entries[key] = url
            await asyncio.to_thread(self._write, entries)

    async def forget(self, key: str) -> None:
        async with self._lock:
            entries = await asyncio.to_thread(self._read)
            if entries.pop(key, None) is not None:
                await asyncio.to_thread(self._write, entries)

    def _read(self) -> dict[str, str]:
        try:
            loaded = json.loads(self._file.read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}

    def _write(self, entries: dict[str, str]) -> None:
        self._file.parent.mkdir(parents=True, exist_ok=True)
        temporary = self._file.with_suffix(".tmp")
        temporary.write_text(json.dumps(entries, indent=1))
        temporary.replace(self._file)
