"""The dashboard in a real (headless) Chromium against a real `ingest dev`: sign in, upload
through tus, lose the network or reload mid-upload, and read the video's results page.

Uploads are sent in 4 MiB PATCHes (the page's `ingest.chunkSize` setting) through an
emulated 3 MiB/s uplink, so each file takes several seconds and several requests:
long enough to be interrupted between requests by an emulated network drop, or
inside one by a page reload.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import cv2
import numpy as np

from tests.e2e.browser import Browser
from tests.e2e.conftest import DevServer
from tests.media import NOT_A_VIDEO, MiB, fake_video_chunks, sha256_of

UPLINK = 3 * MiB
CHUNK = 4 * MiB


def _video(directory: Path, name: str, size: int, seed: int) -> tuple[Path, str]:
    path = directory / name
    with path.open("wb") as out:
        for chunk in fake_video_chunks(size, seed=seed):
            out.write(chunk)
    return path, sha256_of(size, seed=seed)


def _api(dev_server: DevServer, path: str) -> Any:
    request = urllib.request.Request(
        f"{dev_server.url}{path}", headers={"Authorization": f"Bearer {dev_server.token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _sign_in_by_link(browser: Browser, dev_server: DevServer) -> None:
    browser.driver.get(f"{dev_server.url}/dashboard?token={dev_server.token}")
    browser.wait("the signed-in user", lambda: browser.text("#signed-in-as") == "dev")
    assert "token" not in browser.driver.current_url
    # Small PATCHes, so that an interruption falls between two of them.
    browser.local_storage("ingest.chunkSize", str(CHUNK))
    browser.driver.refresh()
    browser.wait("the upload form", lambda: browser.driver.find_element("id", "file-input"))
    _wait_live(browser)


def _wait_live(browser: Browser) -> None:
    browser.wait(
        "the live feed",
        lambda: (
            browser.driver.find_element("id", "feed-state").get_attribute("data-state") == "live"
        ),
    )


def _row(browser: Browser, filename: str) -> dict[str, str] | None:
    for row in browser.rows():
        if row.find_element("css selector", ".filename").text != filename:
            continue
        return {
            "status": row.find_element("css selector", ".pill").text,
            "percent": row.find_element("css selector", ".bar").get_attribute("data-percent")
            or "0",
            "meta": row.find_element("css selector", ".upload-meta").text,
            "session_id": row.get_attribute("data-session-id") or "",
        }
    return None


def _percent(browser: Browser, filename: str) -> float:
    row = _row(browser, filename)
    return float(row["percent"]) if row else 0.0


def _status(browser: Browser, filename: str) -> str:
    row = _row(browser, filename)
    return row["status"] if row else ""


def test_signed_out_pages_say_so_and_how_to_sign_in(
    dev_server: DevServer, browser: Browser
) -> None:
    browser.driver.get(f"{dev_server.url}/dashboard")
    heading = browser.wait("the signed-out page", lambda: browser.text("#signed-out h1"))
    assert heading == "Nobody is signed in"
    assert "ingest dev" in browser.text("#signed-out")
    browser.screenshot("01-signed-out")

    browser.driver.get(f"{dev_server.url}/dashboard/videos/{uuid.uuid4()}/results")
    heading = browser.wait("the signed-out results page", lambda: browser.text("#signed-out h1"))
    assert heading == "Nobody is signed in"
    assert "No upload" not in browser.text("body")
    browser.screenshot("02-results-signed-out")

    browser.driver.find_element("id", "token-input").send_keys("not-a-token")
    browser.driver.find_element("id", "sign-in").click()
    problem = browser.wait("the refusal", lambda: browser.text("#sign-in-problem"))
    assert "refused" in problem
    browser.screenshot("03-token-refused")

    browser.driver.get(f"{dev_server.url}/dashboard")
    field = browser.wait(
        "the token field", lambda: browser.driver.find_element("id", "token-input")
    )
    field.clear()
    field.send_keys(dev_server.token)
    browser.driver.find_element("id", "sign-in").click()
    browser.wait("the signed-in user", lambda: browser.text("#signed-in-as") == "dev")
    browser.driver.find_element("id", "sign-out").click()
    browser.wait("the signed-out page again", lambda: browser.text("#signed-out h1"))


def test_an_upload_survives_a_network_drop_and_opens_its_results(
    dev_server: DevServer, browser: Browser, tmp_path: Path
) -> None:
    size = 20 * MiB
    video, digest = _video(tmp_path, "network-drop.mp4", size, seed=11)
    _sign_in_by_link(browser, dev_server)
    before = _api(dev_server, "/v1/quota")

    browser.network(upload_bps=UPLINK)
    browser.driver.find_element("id", "file-input").send_keys(str(video))
    browser.wait("a quarter of the file sent", lambda: _percent(browser, video.name) > 25)
    moving = _row(browser, video.name)
    assert moving is not None
    assert moving["status"] == "Uploading"
    assert "/s" in moving["meta"]
    assert "left" in moving["meta"]
    browser.screenshot("01-uploading")

    browser.network(offline=True)
    browser.wait(
        "the drop noticed",
        lambda: (
            (row := _row(browser, video.name))
            and row["status"] == "Reconnecting"
            and "Offline: waiting for the network" in row["meta"]
            and row
        ),
    )
    stalled_at = _percent(browser, video.name)
    assert stalled_at < 100
    browser.screenshot("02-offline")

    browser.network(upload_bps=UPLINK)
    browser.wait(
        "the upload completed", lambda: _status(browser, video.name) == "Completed", timeout=60
    )
    assert _percent(browser, video.name) == 100.0
    browser.screenshot("03-completed")

    row = _row(browser, video.name)
    assert row is not None
    session = _api(dev_server, f"/v1/uploads/{row['session_id']}")
    assert session["status"] == "completed"
    assert session["result"]["file_hash"] == digest
    assert session["result"]["file_size"] == size

    browser.wait(
        "the quota moved, on the page too",
        lambda: (
            (now := _api(dev_server, "/v1/quota"))["quota_used"] >= before["quota_used"] + size
            and browser.text("#quota-uploads") == f"{now['uploads_used']} of {now['uploads_limit']}"
            and now["uploads_used"] > before["uploads_used"]
        ),
    )
    browser.screenshot("04-quota")

    # The row is re-rendered whenever the live feed speaks: find it and click in one go.
    browser.click(
        f'[data-session-id="{row["session_id"]}"] a.results-link', "the row's results link"
    )
    title = browser.wait("the results page", lambda: browser.text("#title") == video.name)
    assert title
    facts = browser.wait("the upload's facts", lambda: browser.text("#facts"))
    assert digest in facts
    assert "20.0 MiB" in facts
    assert session["result"]["video_id"] in facts
    state = browser.wait("the analysis state", lambda: browser.text("#analysis-state"))
    assert state in {"Analysis pending", "No results yet", "Analysed", "Not a usable video"}
    browser.screenshot("05-results")


def test_a_reload_mid_upload_resumes_when_the_file_is_chosen_again(
    dev_server: DevServer, browser: Browser, tmp_path: Path
) -> None:
    size = 24 * MiB
    video, digest = _video(tmp_path, "reloaded.mov", size, seed=12)
    _sign_in_by_link(browser, dev_server)

    browser.network(upload_bps=UPLINK)
    browser.driver.find_element("id", "file-input").send_keys(str(video))
    browser.wait("a third of the file sent", lambda: _percent(browser, video.name) > 33)
    browser.driver.refresh()  # aborts the PATCH in flight, as closing the tab would

    browser.wait("the interrupted upload", lambda: _status(browser, video.name) == "Interrupted")
    interrupted = _row(browser, video.name)
    assert interrupted is not None
    assert "Choose the same file again" in interrupted["meta"]
    kept = _api(dev_server, f"/v1/uploads/{interrupted['session_id']}")["bytes_received"]
    assert 0 < kept < size
    browser.screenshot("01-interrupted")

    browser.driver.find_element("id", "file-input").send_keys(str(video))
    browser.wait(
        "the upload completed", lambda: _status(browser, video.name) == "Completed", timeout=60
    )
    done = _row(browser, video.name)
    assert done is not None
    assert done["session_id"] == interrupted["session_id"]
    assert "Resumed at" in done["meta"]
    assert len(browser.rows()) == len({r.get_attribute("data-session-id") for r in browser.rows()})
    browser.screenshot("02-resumed-and-completed")

    session = _api(dev_server, f"/v1/uploads/{done['session_id']}")
    assert session["result"]["file_hash"] == digest
    assert session["result"]["file_size"] == size


def test_the_feed_shows_uploads_from_elsewhere_and_resumes_from_its_cursor(
    dev_server: DevServer, browser: Browser, tmp_path: Path
) -> None:
    _sign_in_by_link(browser, dev_server)
    first, _ = _video(tmp_path, "from-the-cli.mp4", 3 * MiB, seed=21)
    done = dev_server.cli("upload", str(first), "--json")
    assert done.returncode == 0, done.stderr
    # With the feed live the page does not poll: the feed brought this row.
    browser.wait("the CLI upload, live", lambda: _status(browser, first.name) == "Completed")
    _wait_live(browser)
    browser.screenshot("01-live-from-the-cli")

    # A dropped socket reconnects by itself, from the last cursor it was given.
    browser.websocket_events()
    cursor = browser.driver.execute_script(
        "const c = window.ingestFeed.cursor; window.ingestFeed.socket.close(4000); return c;"
    )
    assert cursor
    reopened = browser.wait(
        "the socket reopened",
        lambda: [e.text for e in browser.websocket_events() if e.kind == "opened"],
    )
    assert parse_qs(urlparse(reopened[0]).query)["since"] == [cursor]
    _wait_live(browser)

    # Events published while the page had no socket are replayed when it reconnects.
    browser.driver.execute_script("window.ingestFeed.stop()")
    second, _ = _video(tmp_path, "while-away.mp4", 2 * MiB, seed=22)
    done = dev_server.cli("upload", str(second), "--json")
    assert done.returncode == 0, done.stderr
    video_id = json.loads(done.stdout)[0]["video_id"]
    browser.driver.execute_script("window.ingestFeed.start()")
    _wait_live(browser)
    browser.wait("the missed upload", lambda: _status(browser, second.name) == "Completed")

    def replayed() -> bool:
        frames = [json.loads(e.text) for e in browser.websocket_events() if e.kind == "received"]
        return any(
            f["event_type"] == "upload_complete" and f["data"].get("video_id") == video_id
            for f in frames
        )

    browser.wait("the replayed completion", replayed)
    browser.screenshot("02-replayed")


def _decodable_video(path: Path) -> Path:
    """Three seconds of a moving gradient that OpenCV encodes (MPEG-4 part 2) and decodes."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 10.0, (160, 120))
    ramp = np.tile(np.linspace(0, 255, 160, dtype=np.uint8), (120, 1))
    try:
        for i in range(30):
            writer.write(cv2.merge([np.roll(ramp, 4 * i, axis=1)] * 3))
    finally:
        writer.release()
    return path


def _results(dev_server: DevServer, video_id: str) -> dict[str, Any] | None:
    try:
        answer: dict[str, Any] = _api(dev_server, f"/v1/videos/{video_id}/results")
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise
    return answer


def test_the_results_page_shows_what_the_results_route_holds(
    dev_server: DevServer, browser: Browser, tmp_path: Path
) -> None:
    video = _decodable_video(tmp_path / "gradient.mp4")
    _sign_in_by_link(browser, dev_server)
    browser.driver.find_element("id", "file-input").send_keys(str(video))
    browser.wait("the upload completed", lambda: _status(browser, video.name) == "Completed")
    row = _row(browser, video.name)
    assert row is not None
    video_id = _api(dev_server, f"/v1/uploads/{row['session_id']}")["result"]["video_id"]
    link = f'[data-session-id="{row["session_id"]}"] a.results-link'
    browser.click(link, "the results link")
    browser.wait("the results page", lambda: browser.text("#title") == video.name)

    # Whatever this build runs, the page must say what the results route holds once
    # the analysis has ended; without a detection consumer the route never has anything.
    deadline = time.monotonic() + 45
    answer = _results(dev_server, video_id)
    while time.monotonic() < deadline and (answer is None or answer["status"] == "pending"):
        time.sleep(0.5)
        answer = _results(dev_server, video_id)
    if answer is None:
        assert browser.text("#analysis-state") == "No results yet"
        browser.screenshot("01-no-results")
        return
    assert answer["status"] == "completed", answer
    browser.wait("the live result", lambda: browser.text("#analysis-state") == "Analysed")
    info = answer["detection"]["video"]
    stats = browser.text("#video-stats")
    # The page writes the frame size as WIDTH, a multiplication sign, HEIGHT.
    assert f"{info['width']}\u00d7{info['height']}" in stats
    assert str(info["frames_decoded"]) in stats
    if answer["detection"]["model"] is None:
        assert "No model ran" in browser.text("#analysis")
    browser.screenshot("01-analysed")


def test_refusals_and_duplicates_are_shown_on_their_rows(
    dev_server: DevServer, browser: Browser, tmp_path: Path
) -> None:
    _sign_in_by_link(browser, dev_server)
    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_bytes(NOT_A_VIDEO * 64)
    browser.driver.find_element("id", "file-input").send_keys(str(not_a_video))
    browser.wait("the refusal", lambda: _status(browser, not_a_video.name) == "Failed")
    refused = _row(browser, not_a_video.name)
    assert refused is not None
    assert "UNSUPPORTED_MEDIA_TYPE" in refused["meta"]
    assert "100 %" not in refused["meta"]  # the server kept none of it

    original, _ = _video(tmp_path, "original.mp4", 2 * MiB, seed=31)
    again = tmp_path / "same-bytes.mp4"
    again.write_bytes(original.read_bytes())
    browser.driver.find_element("id", "file-input").send_keys(str(original))
    browser.wait("the original stored", lambda: _status(browser, original.name) == "Completed")
    browser.driver.find_element("id", "file-input").send_keys(str(again))
    browser.wait("the copy stored", lambda: _status(browser, again.name) == "Completed")
    copy = browser.wait(
        "the duplicate noticed",
        lambda: (row := _row(browser, again.name)) and "duplicate" in row["meta"] and row,
    )
    assert isinstance(copy, dict)
    stored = _row(browser, original.name)
    assert stored is not None
    first = _api(dev_server, f"/v1/uploads/{stored['session_id']}")
    assert first["result"]["video_id"][:8] in copy["meta"]
    browser.screenshot("01-refused-and-duplicate")
    browser.driver.set_window_size(420, 900)
    browser.screenshot("02-narrow-window")

    unknown = uuid.uuid4()
    browser.driver.get(f"{dev_server.url}/dashboard/videos/{unknown}/results")
    problem = browser.wait("the unknown video", lambda: browser.text("#problem"))
    assert f"None of your uploads has the video id {unknown}" in problem
