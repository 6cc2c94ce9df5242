"""Detached service processes: spawn, liveness, stop, who uses a directory, and log tails.

The stack's servers must outlive the `ingest stack up` command that started
them, so they run in their own session and are tracked by pid. A pid is only
trusted while its command line still names the stack's data directory, so a
recycled pid is never signalled. `users_of` finds every process that names a
directory on its command line, works in it or holds a file open in it (a
server restarted by hand included), so nothing deletes a directory from
under a running process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


def spawn(
    argv: Sequence[str], *, log_path: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            start_new_session=True,
        )


def is_running(pid: int, marker: str) -> bool:
    """True while `pid` is alive and its command line names the path `marker`."""
    if pid <= 0:
        return False  # never a service; and waitpid(0) would reap any child of ours
    _reap(pid)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":
        return False
    # The command line reads empty for an instant while a process re-executes itself
    # (MinIO does at start-up): alive, and not yet comparable.
    return not cmdline or _names(cmdline, marker)


@dataclass(frozen=True)
class DirectoryUser:
    pid: int
    command: str

    def __str__(self) -> str:
        return f"pid {self.pid} ({self.command[:120]})"


def users_of(directory: Path) -> list[DirectoryUser]:
    """Every live process (but this one) that names `directory` (or a path in it) on its
    command line, works in it, or holds a file in it open. Processes of other users that
    cannot be inspected are not seen."""
    root = str(directory.resolve())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        try:
            cmdline = (entry / "cmdline").read_bytes()
            if not cmdline or (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z":
                continue  # kernel threads and zombies hold nothing
            if _names(cmdline, root) or _names(cmdline, str(directory)) or _inside(entry, root):
                command = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
                found.append(DirectoryUser(pid, command))
        except OSError:
            continue  # gone meanwhile, or not ours to inspect
    return found


def _names(cmdline: bytes, path: str) -> bool:
    """True when an argument is `path` or a path below it (never a sibling like `path-2`)."""
    wanted = path.rstrip("/").encode()
    return any(argument == wanted or wanted + b"/" in argument for argument in cmdline.split(b"\0"))


def _inside(proc_entry: Path, root: str) -> bool:
    """The process works in `root` or has a file below it open."""
    links = [proc_entry / "cwd"]
    with contextlib.suppress(OSError):
        links.extend((proc_entry / "fd").iterdir())
    for link in links:
        with contextlib.suppress(OSError):
            target = os.readlink(link)
            if target == root or target.startswith(root + "/"):
                return True
    return False


def stop(pid: int, marker: str, *, grace: float = 15.0) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left after `grace` seconds."""
    if not is_running(pid, marker):
        return
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not is_running(pid, marker):
            return
        time.sleep(0.1)
    _signal_group(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while is_running(pid, marker) and time.monotonic() < deadline:
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)


def _reap(pid: int) -> None:
    # A child we spawned in this process stays a zombie (and looks alive) until waited on.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
