"""report.html opened from disk in headless Chromium: the plots show, the data renders as text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from selenium.webdriver.common.by import By

from tests.support.versions import PAYLOAD, build, make_rows

PLOTS = {"Pass rate per problem", "Output length of accepted and rejected traces", "Rejects by verifier:reason",
         "Where the output tokens went"}


def _images(browser: Any) -> dict[str, int]:
    """alt -> rendered width of each image that actually decoded."""
    return {img.get_attribute("alt"): int(img.get_property("naturalWidth") or 0)
            for img in browser.find_elements(By.TAG_NAME, "img")}


def test_report_shows_plots_and_escapes_the_data(browser: Any, shot: Any, tmp_path: Path) -> None:
    v = build(tmp_path / "ds", make_rows(12))
    browser.get((v / "report.html").as_uri())
    assert browser.title == "ds v1: report"  # a script from the data would have changed it
    images = _images(browser)
    assert set(images) == PLOTS and all(w > 300 for w in images.values()), images
    body = browser.find_element(By.TAG_NAME, "body").text
    assert PAYLOAD in body  # the payload is shown as the text it is
    assert "math:wrong_answer" in body and "estimated cost" in body
    # Only the page's own images exist: the payload's <img> was never parsed into an element.
    assert len(browser.find_elements(By.CSS_SELECTOR, "img[src='x']")) == 0
    assert browser.find_elements(By.TAG_NAME, "script") == []
    shot("report")


def test_report_of_a_version_with_no_accepted_rows(browser: Any, shot: Any, tmp_path: Path) -> None:
    v = build(tmp_path / "none", make_rows(5, accept=False))
    browser.get((v / "report.html").as_uri())
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "No trace was accepted" in body and browser.title == "none v1: report"
    images = _images(browser)
    assert set(images) == PLOTS and all(w > 300 for w in images.values()), images
    shot("report-none-accepted")
