"""What a new user meets first: a taken port, a bad token, the banner's example, the results.

The progress test runs `ingest upload` under a pseudo-terminal, as a person
sees it, and keeps the transcript in `test-artifacts/` (not in git) for a look.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import shlex
import socket
import struct
import subprocess
import sys
import termios
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.stack.process import free_port
from ingest.auth import issue_token
from tests.e2e.conftest import DevServer
from tests.media import MiB, write_fake_video

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


@pytest.fixture
def taken_port() -> Iterator[int]:
    holder = socket.socket()
    holder.bind(("127.0.0.1", free_port()))
    holder.listen()
    try:
        yield holder.getsockname()[1]
    finally:
        holder.close()


def _ingest(
    *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.parametrize("command", ["dev", "serve"])
def test_a_taken_port_is_one_line_naming_it_and_another(
    command: str, taken_port: int, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "INGEST_DATA_DIR": str(tmp_path),
        "INGEST_JWT_SECRET": "a-secret-long-enough-for-hs256-tokens-0123",
    }
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "S3_ENDPOINT_URL"):
        env.pop(name, None)
    done = _ingest(command, "--port", str(taken_port), env=env)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"port {taken_port} is already in use on 127.0.0.1" in lines[0]
    suggested = re.search(rf"ingest {command} --port (\d+)", lines[0])
    assert suggested is not None, lines[0]
    assert int(suggested.group(1)) != taken_port
    assert "Traceback" not in done.stdout


def test_a_token_that_is_not_a_jwt_is_explained(dev_server: DevServer, tmp_path: Path) -> None:
    video = tmp_path / "clip.mp4"
    write_fake_video(video, 64 * 1024, seed=1)
    done = _ingest(
        "upload",
        str(video),
        env={**dev_server.env, "INGEST_URL": dev_server.url, "INGEST_TOKEN": "paste-here"},
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "ingest upload: the token is not a JWT; "
        "run `ingest token --user NAME` or copy the token `ingest dev` printed"
    )


def test_a_token_the_server_refuses_is_explained(dev_server: DevServer, tmp_path: Path) -> None:
    video = tmp_path / "clip.mp4"
    write_fake_video(video, 64 * 1024, seed=1)
    forged = issue_token("not-the-dev-servers-secret-but-long-enough", "dev", ttl_seconds=60)
    done = _ingest(
        "upload",
        str(video),
        env={**dev_server.env, "INGEST_URL": dev_server.url, "INGEST_TOKEN": forged},
    )
    assert done.returncode == 1
    assert "signature does not match" in done.stderr
    assert "run `ingest token --user NAME`" in done.stderr
    assert "segments" not in done.stderr
    assert "Error(" not in done.stderr


def test_the_root_address_leads_to_the_dashboard(dev_server: DevServer) -> None:
    with urllib.request.urlopen(f"{dev_server.url}/") as response:
        assert response.url == f"{dev_server.url}/dashboard"
        assert "<title>Video ingest</title>" in response.read().decode()


def test_the_banner_s_upload_command_works_as_printed(
    dev_server: DevServer, tmp_path: Path
) -> None:
    banner = (dev_server.data_dir / "dev.log").read_text()
    example = re.search(r"try: (.+) upload some-video\.mp4", banner)
    assert example is not None, banner
    video = tmp_path / "some-video.mp4"
    write_fake_video(video, 256 * 1024, seed=3)
    done = subprocess.run(
        [*shlex.split(example.group(1)), "upload", str(video)],
        env={**dev_server.env, "INGEST_URL": dev_server.url, "INGEST_TOKEN": dev_server.token},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    # The result is a link a terminal can open: absolute, on the server it was sent to.
    assert f" {dev_server.url}/dashboard/videos/" in done.stdout


def test_a_resumable_upload_refused_for_good_is_forgotten(
    dev_server: DevServer, tmp_path: Path
) -> None:
    fake = tmp_path / "notes.mp4"
    fake.write_bytes(b"plain text, not a video container " * 200)
    state = dev_server.data_dir / "client-state.json"
    env = {**dev_server.env, "INGEST_URL": dev_server.url, "INGEST_TOKEN": dev_server.token}
    done = _ingest("upload", str(fake), "--resumable", env=env)
    assert done.returncode == 1
    assert "415" in done.stderr
    assert json.loads(state.read_text()) == {}  # the next run starts over, not asks about it
    again = _ingest("upload", str(fake), "--resumable", env=env)
    assert again.returncode == 1
    assert "415" in again.stderr


def test_progress_and_results_as_a_terminal_shows_them(
    dev_server: DevServer, tmp_path: Path
) -> None:
    video = tmp_path / "on-a-terminal.mp4"
    write_fake_video(video, 24 * MiB, seed=11)
    env = {
        **dev_server.env,
        "INGEST_URL": dev_server.url,
        "INGEST_TOKEN": dev_server.token,
        "TERM": "xterm-256color",
    }
    env.pop("NO_COLOR", None)
    raw = _run_in_terminal(
        [sys.executable, "-m", "cli.main", "upload", str(video)], env=env, within=120
    )
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "upload-on-a-terminal.raw").write_bytes(raw)
    screen = _ANSI.sub("", raw.decode(errors="replace"))
    (ARTIFACTS / "upload-on-a-terminal.txt").write_text(screen)

    assert "on-a-terminal.mp4 sha256" in screen  # the hashing bar
    assert re.search(r"24\.0/24\.0 MiB", screen), screen  # a bar that reached the end
    assert re.search(r"\d+\.\d [KMG]iB/s", screen), screen  # its speed, in the bar's units
    result = re.search(
        rf"on-a-terminal\.mp4: video \S+ analysis \S+ sha256 [0-9a-f]{{64}} "
        rf"({re.escape(dev_server.url)}/dashboard/videos/\S+)",
        screen,
    )
    assert result is not None, screen
    assert "Traceback" not in screen


def _run_in_terminal(command: list[str], *, env: dict[str, str], within: float) -> bytes:
    """Everything `command` writes to a 120x40 pseudo-terminal, until it exits."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = subprocess.Popen(
        command, stdin=follower, stdout=follower, stderr=follower, env=env, close_fds=True
    )
    os.close(follower)
    seen = bytearray()
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's other side closed, the command is done
                break
            if not data:
                break
            seen += data
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        os.close(leader)
    assert process.returncode == 0, bytes(seen).decode(errors="replace")
    return bytes(seen)
