"""A real headless Chromium (Debian's `chromium` + `chromium-driver`) driven by selenium.

The tests skip, saying why, only where the browser cannot be found (.ci/run installs it). Each
test keeps a screenshot of every page it looks at under $FACTORY_TEST_ARTIFACTS (default: a temp
dir, printed in the report).
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
CHROMEDRIVER = ["/usr/bin/chromedriver"]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,1000"]


def _first(paths: list[str], name: str) -> str | None:
    return next((p for p in paths if os.access(p, os.X_OK)), None) or shutil.which(name)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install '.[test]')")
    chromium, driver = _first(CHROMIUM, "chromium"), _first(CHROMEDRIVER, "chromedriver")
    if not chromium or not driver:
        pytest.skip("no chromium/chromedriver: apt-get install -y chromium chromium-driver (.ci/run does)")
    os.environ["SE_OFFLINE"] = "true"  # selenium must never try to download a driver
    profile = tempfile.mkdtemp(prefix="factory-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in FLAGS + [f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    d = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    d.set_page_load_timeout(30)
    try:
        yield d
    finally:
        d.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = os.environ.get("FACTORY_TEST_ARTIFACTS")
    path = Path(where) if where else tmp_path_factory.mktemp("browser-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def shot(browser: Any, artifacts: Path, request: pytest.FixtureRequest):
    """shot("name"): a full-page screenshot of what the browser shows now, kept as an artifact."""
    def take(name: str) -> Path:
        # The whole page, not just the window: Chromium's own screenshot call, beyond the viewport.
        size = browser.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 8000), "scale": 1}
        shot = browser.execute_cdp_cmd("Page.captureScreenshot",
                                       {"format": "png", "captureBeyondViewport": True, "clip": clip})
        path = artifacts / f"{request.node.name}-{name}.png"
        path.write_bytes(base64.b64decode(shot["data"]))
        return path
    return take
