"""A new user's first minutes: `ingest dev` on the embedded default, `ingest upload`, dashboard."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.e2e.conftest import DevServer
from tests.media import MiB, write_fake_video


def test_upload_command_stores_files_and_prints_their_results(
    dev_server: DevServer, tmp_path: Path
) -> None:
    first = tmp_path / "first.mp4"
    second = tmp_path / "second.mov"
    first_sha = write_fake_video(first, 12 * MiB, seed=1)
    second_sha = write_fake_video(second, 3 * MiB + 5, seed=2)

    done = dev_server.cli("upload", str(first), str(second), "--parallel", "2", "--json")
    assert done.returncode == 0, done.stderr
    results = {Path(r["file"]).name: r for r in json.loads(done.stdout)}
    assert results["first.mp4"]["file_hash"] == first_sha
    assert results["second.mov"]["file_hash"] == second_sha
    assert results["first.mp4"]["file_size"] == 12 * MiB
    assert results["first.mp4"]["redirect_url"].startswith("/dashboard/videos/")

    stored = dev_server.data_dir / "objects" / "ingest" / results["first.mp4"]["s3_key"]
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == first_sha


def test_upload_command_fails_loudly_on_a_file_that_is_not_a_video(
    dev_server: DevServer, tmp_path: Path
) -> None:
    fake = tmp_path / "notes.mp4"
    fake.write_bytes(b"just some text, not a video container" * 100)
    done = dev_server.cli("upload", str(fake))
    assert done.returncode == 1
    assert "415" in done.stderr
    assert "notes.mp4" in done.stderr


def test_the_dashboard_and_its_scripts_are_served(dev_server: DevServer) -> None:
    with urllib.request.urlopen(f"{dev_server.url}/dashboard") as response:
        page = response.read().decode()
    assert "<title>Video ingest</title>" in page
    with urllib.request.urlopen(f"{dev_server.url}/dashboard/static/tus.js") as response:
        assert response.headers["Content-Type"].startswith("text/javascript")
        assert "/v1/tus/" in response.read().decode()


def test_the_token_command_signs_with_the_dev_secret(dev_server: DevServer) -> None:
    issued = dev_server.cli("token", "--user", "carol")
    assert issued.returncode == 0, issued.stderr
    request = urllib.request.Request(
        f"{dev_server.url}/v1/quota", headers={"Authorization": f"Bearer {issued.stdout.strip()}"}
    )
    with urllib.request.urlopen(request) as response:
        assert json.loads(response.read())["user_id"] == "carol"


def test_an_interrupted_resumable_upload_finishes_from_the_servers_offset(
    dev_server: DevServer, tmp_path: Path
) -> None:
    video = tmp_path / "resumed.mp4"
    size = 96 * MiB
    digest = write_fake_video(video, size, seed=7)
    env = {**dev_server.env, "INGEST_URL": dev_server.url, "INGEST_TOKEN": dev_server.token}
    command = [
        sys.executable,
        "-m",
        "cli.main",
        "upload",
        str(video),
        "--resumable",
        "--chunk-size",
        "8MiB",
        "--json",
    ]

    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while _tus_offset(dev_server) < 20 * MiB and time.monotonic() < deadline:
        time.sleep(0.05)
    first.kill()  # mid-file, as a crash or a closed laptop would
    first.wait(timeout=10)
    kept = _tus_offset(dev_server)
    assert 0 < kept < size, f"the server kept {kept} bytes"

    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    result = json.loads(second.stdout)[0]
    assert result["file_hash"] == digest
    assert result["file_size"] == size
    # The second run sent about the remainder, not the whole file.
    assert result["resumed_from"] >= kept - 16 * MiB
    assert result["bytes_sent"] <= size - kept + 16 * MiB


def _tus_offset(dev_server: DevServer) -> int:
    """What the server holds of the one resumable upload the client remembers (0 before it)."""
    try:
        remembered = json.loads((dev_server.data_dir / "client-state.json").read_text())
    except (OSError, ValueError):
        return 0
    if not remembered:
        return 0
    (location,) = remembered.values()
    request = urllib.request.Request(
        f"{dev_server.url}{location}" if location.startswith("/") else location,
        method="HEAD",
        headers={"Authorization": f"Bearer {dev_server.token}", "Tus-Resumable": "1.0.0"},
    )
    with urllib.request.urlopen(request) as response:
        return int(response.headers["Upload-Offset"])


async def test_the_live_feed_and_live_progress_run_on_the_dev_port(
    dev_server: DevServer, tmp_path: Path
) -> None:
    import aiohttp

    video = tmp_path / "live.mp4"
    await asyncio.to_thread(write_fake_video, video, 3 * MiB, seed=3)
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(
            f"{dev_server.url}/ws/upload-progress", params={"token": dev_server.token}
        )
        await ws.send_json({"type": "ping"})
        assert (await ws.receive_json(timeout=10))["event_type"] == "pong"
        done = await asyncio.to_thread(dev_server.cli, "upload", str(video), "--json")
        assert done.returncode == 0, done.stderr
        [result] = json.loads(done.stdout)
        kinds: list[str] = []
        while "upload_complete" not in kinds:
            message = await ws.receive_json(timeout=10)
            # Only the upload's own lifecycle: the detection of a video an earlier test of
            # this module uploaded may still report (processing_*), as may the quota.
            if message["event_type"].startswith("upload_"):
                kinds.append(message["event_type"])
        assert kinds[0] == "upload_started"
        assert message["data"]["video_id"] == result["video_id"]
        session_id = message["session_id"]
        await ws.close()
        async with http.get(
            f"{dev_server.url}/v1/uploads/{session_id}/progress",
            headers={"Authorization": f"Bearer {dev_server.token}"},
        ) as response:
            progress = await response.json()
        assert progress["status"] == "completed"
        assert progress["redirect_url"] == result["redirect_url"]
