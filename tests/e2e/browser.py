"""A headless Chromium driven by Selenium, for tests of the dashboard as a person uses it.

Debian's `chromium` and `chromium-driver` (scripts/system-deps installs both);
Selenium is pointed at them so it never tries to download a browser or driver.
Each test gets a fresh profile (localStorage included). Screenshots go to
`test-artifacts/dashboard/` at the repository root (gitignored), or to
$INGEST_TEST_ARTIFACTS/dashboard when that is set.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webelement import WebElement

T = TypeVar("T")

ARTIFACTS = Path(
    os.environ.get("INGEST_TEST_ARTIFACTS")
    or Path(__file__).resolve().parents[2] / "test-artifacts"
)


def _chromium() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.skip(
            "Chromium and chromedriver are not installed "
            "(scripts/system-deps installs the chromium and chromium-driver packages)"
        )
    return browser, driver


@dataclass(frozen=True)
class WebSocketEvent:
    kind: str  # "opened" (text: the URL) or "received" (text: the frame)
    text: str


class Browser:
    """The driver, plus the few things the dashboard tests do again and again."""

    def __init__(self, driver: webdriver.Chrome, shots: Path) -> None:
        self.driver = driver
        self.shots = shots

    def screenshot(self, name: str) -> Path:
        self.shots.mkdir(parents=True, exist_ok=True)
        path = self.shots / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def wait(self, what: str, probe: Callable[[], T | None], timeout: float = 30) -> T:
        """`probe()`'s first truthy answer; fails naming `what` (and saves a screenshot)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                found = probe()
            except (StaleElementReferenceException, WebDriverException):
                found = None
            if found:
                return found
            if time.monotonic() > deadline:
                shot = self.screenshot(f"timeout-{what.replace(' ', '-')[:60]}")
                pytest.fail(f"waited {timeout:.0f} s for {what} (screenshot {shot})")
            time.sleep(0.1)

    def click(self, css: str, what: str) -> None:
        """Click the element `css` finds, again when the page re-rendered it in between."""

        def clicked() -> bool:
            self.driver.find_element("css selector", css).click()
            return True

        self.wait(what, clicked)

    def text(self, css: str) -> str:
        found = self.driver.find_elements("css selector", css)
        return found[0].text if found else ""

    def rows(self) -> list[WebElement]:
        return self.driver.find_elements("css selector", "#uploads .upload")

    def network(self, *, offline: bool = False, upload_bps: int = 0) -> None:
        """Emulated network conditions (0 = unthrottled)."""
        self.driver.set_network_conditions(
            offline=offline,
            latency=0,
            download_throughput=-1,
            upload_throughput=upload_bps or -1,
        )

    def websocket_events(self) -> list[WebSocketEvent]:
        """WebSocket openings (their URL) and frames received since the last call."""
        events = []
        for entry in self.driver.get_log("performance"):  # type: ignore[no-untyped-call]
            message = json.loads(entry["message"])["message"]
            params = message.get("params", {})
            if message["method"] == "Network.webSocketCreated":
                events.append(WebSocketEvent("opened", params["url"]))
            elif message["method"] == "Network.webSocketFrameReceived":
                events.append(WebSocketEvent("received", params["response"]["payloadData"]))
        return events

    def local_storage(self, key: str, value: str) -> None:
        self.driver.execute_script("localStorage.setItem(arguments[0], arguments[1])", key, value)


@pytest.fixture
def browser(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Browser]:
    binary, driver_path = _chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(argument)
    # The performance log carries the DevTools network events, WebSocket frames included.
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(30)
    shots = ARTIFACTS / "dashboard" / request.node.name
    try:
        yield Browser(driver, shots)
    finally:
        driver.quit()
