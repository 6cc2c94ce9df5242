"""`ingest upload` hashes each file first: a file already stored takes no upload at all."""

from __future__ import annotations

import hashlib
import json
import re
import urllib.request
from pathlib import Path

from tests.e2e.conftest import DevServer
from tests.media import MiB, fake_video_chunks


def _metric(dev_server: DevServer, name: str) -> float:
    """The sum of every sample of `name` on the server's /metrics."""
    with urllib.request.urlopen(f"{dev_server.url}/metrics", timeout=10) as response:
        text = response.read().decode()
    pattern = re.compile(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", re.MULTILINE)
    return sum(float(value) for value in pattern.findall(text))


def test_a_file_already_stored_is_not_sent_again(dev_server: DevServer, tmp_path: Path) -> None:
    video = tmp_path / "again.mp4"
    digest = hashlib.sha256()
    with video.open("wb") as out:
        for chunk in fake_video_chunks(6 * MiB, seed=77):
            out.write(chunk)
            digest.update(chunk)

    first = dev_server.cli("upload", str(video), "--json")
    assert first.returncode == 0, first.stderr
    (stored,) = json.loads(first.stdout)
    assert stored["file_hash"] == digest.hexdigest()
    assert stored["bytes_sent"] == 6 * MiB
    body_bytes = _metric(dev_server, "ingest_upload_bytes_total")
    streamed = _metric(dev_server, "ingest_uploads_total")
    assert body_bytes >= 6 * MiB

    again = dev_server.cli("upload", str(video))
    assert again.returncode == 0, again.stderr
    # The earlier result is the result: the same video, printed as any other.
    assert f"video {stored['video_id']}" in again.stdout
    assert f"(duplicate of {stored['video_id']})" in again.stdout
    # Nothing streamed: no upload request reached the server, no byte was counted.
    assert _metric(dev_server, "ingest_upload_bytes_total") == body_bytes
    assert _metric(dev_server, "ingest_uploads_total") == streamed
