"""A new user's first minutes: `ingest dev` on the embedded default, `ingest upload`, dashboard."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.conftest import DevServer
from tests.media import MiB, fake_video_chunks


def _write_video(path: Path, size: int, seed: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as out:
        for chunk in fake_video_chunks(size, seed=seed):
            out.write(chunk)
            digest.update(chunk)
    return digest.hexdigest()


def test_upload_command_stores_files_and_prints_their_results(
    dev_server: DevServer, tmp_path: Path
) -> None:
    first = tmp_path / "first.mp4"
    second = tmp_path / "second.mov"
    first_sha = _write_video(first, 12 * MiB, seed=1)
    second_sha = _write_video(second, 3 * MiB + 5, seed=2)

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


def test_the_dashboard_and_its_script_are_served(dev_server: DevServer) -> None:
    with urllib.request.urlopen(f"{dev_server.url}/dashboard") as response:
        page = response.read().decode()
    assert "<title>Video ingest</title>" in page
    with urllib.request.urlopen(f"{dev_server.url}/dashboard/app.js") as response:
        assert "/v1/dashboard/upload/initiate" in response.read().decode()


def test_the_token_command_signs_with_the_dev_secret(dev_server: DevServer) -> None:
    issued = dev_server.cli("token", "--user", "carol")
    assert issued.returncode == 0, issued.stderr
    request = urllib.request.Request(
        f"{dev_server.url}/v1/quota", headers={"Authorization": f"Bearer {issued.stdout.strip()}"}
    )
    with urllib.request.urlopen(request) as response:
        assert json.loads(response.read())["user_id"] == "carol"


def test_the_dashboard_lists_an_upload_in_a_real_browser(
    dev_server: DevServer, tmp_path: Path
) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Chromium is not installed (scripts/system-deps installs it with apt-get)")
    video = tmp_path / "seen-in-browser.mp4"
    _write_video(video, 2 * MiB, seed=5)
    done = dev_server.cli("upload", str(video), "--json")
    assert done.returncode == 0, done.stderr
    video_id = json.loads(done.stdout)[0]["video_id"]

    dom = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            f"{dev_server.url}/dashboard?token={dev_server.token}",
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    ).stdout
    assert "Signed in as dev" in dom
    assert "seen-in-browser.mp4" in dom
    assert f'href="/dashboard/videos/{video_id}/results"' in dom
