"""`factory view` in headless Chromium: filtering, paging, opening a trace, hostile data, and a
million-row version opening in seconds."""

from __future__ import annotations

import time
from html.parser import HTMLParser
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait

from factory.viewer.query import PAGE_SIZE
from factory.viewer.server import Viewer, ViewerServer
from tests.support.bigversion import make_big_version
from tests.support.versions import PAYLOAD, build, make_rows

ROWS = make_rows(30)  # 120 rows; prompt 0 carries the HTML/script payload


def _serve(version_dir: Path) -> Iterator[ViewerServer]:
    server = ViewerServer(Viewer(version_dir, ["v0"]))
    server.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ViewerServer]:
    yield from _serve(build(tmp_path_factory.mktemp("view") / "ds", ROWS))


class _Cells(HTMLParser):
    """Cell texts per row of an HTML table (one WebDriver call for the whole table, not one a cell)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag == "td":
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _listed(browser: Any) -> list[tuple[str, int, str]]:
    """(prompt_id, sample, status) of the rows the list shows."""
    tables = browser.find_elements(By.CSS_SELECTOR, "main table")
    if not tables:
        return []
    parser = _Cells()
    parser.feed(tables[0].get_attribute("outerHTML"))
    return [(cells[0], int(cells[1]), cells[2]) for cells in parser.rows if cells]


def _follow(browser: Any, element: Any) -> None:
    """Click a link or submit button and wait for the page it opens: a click returns before the
    new page has replaced the old one, and a loaded machine reads the old page's elements."""
    old = browser.find_element(By.TAG_NAME, "html")
    element.click()
    WebDriverWait(browser, 30).until(expected_conditions.staleness_of(old))


def _key(r: dict[str, Any]) -> tuple[str, int]:
    return r["prompt_id"], r["sample_index"]


def test_filter_and_page(browser: Any, shot: Any, site: ViewerServer) -> None:
    browser.get(site.url)
    assert browser.title == "ds v1"
    assert browser.find_element(By.ID, "shown").text == f"rows 1-{PAGE_SIZE} of 120 matching"
    shot("list")
    # Filter as a person would: pick "rejected" in the form and submit.
    Select(browser.find_element(By.NAME, "status")).select_by_value("rejected")
    _follow(browser, browser.find_element(By.CSS_SELECTOR, "form.filters button"))
    rejected = [r for r in ROWS if not r["accepted"]]
    assert browser.find_element(By.ID, "shown").text == f"rows 1-{PAGE_SIZE} of {len(rejected)} matching"
    shown = _listed(browser)
    assert [(p, s) for p, s, _ in shown] == [_key(r) for r in rejected[:PAGE_SIZE]]
    assert {st for _, _, st in shown} == {"rejected"}
    # The next page starts where the first ended.
    _follow(browser, browser.find_element(By.CSS_SELECTOR, "a[rel=next]"))
    assert [(p, s) for p, s, _ in _listed(browser)] == [_key(r) for r in rejected[PAGE_SIZE:2 * PAGE_SIZE]]
    shot("list-rejected-page2")
    # Reason, failed verifier, length and pass rate together (a URL is a filter too).
    browser.get(site.url + "?status=rejected&reason=math%3Awrong_answer&verifier=math&min_tokens=100"
                "&max_tokens=300&min_pass=0.25&max_pass=0.5")
    want = [_key(r) for r in ROWS if r["reject_reason"] == "math:wrong_answer" and 100 <= r["num_tokens"] <= 300
            and int(r["prompt_id"][1:]) % 5 in (1, 2)]  # pass rate 1/4 or 2/4
    assert want and [(p, s) for p, s, _ in _listed(browser)] == want
    assert Select(browser.find_element(By.NAME, "reason")).first_selected_option.get_attribute("value") == \
        "math:wrong_answer"
    shot("list-combined-filter")
    browser.get(site.url + "?verifier=truncation")
    assert {p for p, _, _ in _listed(browser)} == {r["prompt_id"] for r in ROWS if r["reject_reason"] == "truncation:truncated"}
    browser.get(site.url + "?min_tokens=abc")
    assert "min tokens must be a number" in browser.find_element(By.ID, "error").text


def test_open_a_trace(browser: Any, shot: Any, site: ViewerServer) -> None:
    browser.get(site.url + "?status=rejected&reason=truncation%3Atruncated")
    first = browser.find_element(By.CSS_SELECTOR, "main table tr td a")
    pid = first.text
    _follow(browser, first)
    row = next(r for r in ROWS if r["prompt_id"] == pid and r["reject_reason"] == "truncation:truncated")
    assert browser.find_element(By.ID, "trace-title").text == f"{pid} · sample {row['sample_index']}"
    assert browser.find_element(By.ID, "problem").text == row["problem"]
    assert browser.find_element(By.ID, "reasoning").text == row["reasoning"]
    assert browser.find_element(By.ID, "answer").text == row["messages"][-1]["content"].split("</think>\n\n")[1]
    assert browser.find_element(By.ID, "extracted").text == row["extracted_answer"]
    assert browser.find_element(By.ID, "reference").text.startswith(row["reference"])
    verdicts = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
                for tr in browser.find_elements(By.CSS_SELECTOR, "#verdicts tr")[1:]]
    assert verdicts == [["truncation", "failed", "truncated"], ["math", "failed", "wrong_answer"]]
    samples = browser.find_elements(By.CSS_SELECTOR, "#samples tr")[1:]
    assert len(samples) == 4 and sum("▸" in s.text for s in samples) == 1
    shot("trace")
    # Another sample of the same problem, then back to the filtered list.
    other = next(s for s in samples if "▸" not in s.text).find_element(By.TAG_NAME, "a")
    _follow(browser, other)
    assert browser.find_element(By.ID, "trace-title").text.startswith(pid)
    _follow(browser, browser.find_element(By.ID, "back"))
    assert "reason=truncation%3Atruncated" in browser.current_url
    assert {st for _, _, st in _listed(browser)} == {"rejected"}


def test_html_and_script_in_a_trace_render_as_text(browser: Any, shot: Any, site: ViewerServer) -> None:
    browser.get(site.url + "trace?p=p00000&s=0")
    assert browser.title == "p00000 #0"  # the payload sets it to PWNED if it ever runs
    assert PAYLOAD in browser.find_element(By.ID, "problem").text
    assert PAYLOAD in browser.find_element(By.ID, "reasoning").text
    assert browser.find_elements(By.CSS_SELECTOR, "img[src='x']") == []
    assert browser.find_elements(By.TAG_NAME, "script") == []
    shot("trace-with-payload")
    browser.get(site.url)  # the list shows the payload's problem too
    assert browser.title == "ds v1" and browser.find_elements(By.CSS_SELECTOR, "img[src='x']") == []
    browser.get(site.url + "report")  # the report, served from the version
    assert browser.title == "ds v1: report" and len(browser.find_elements(By.TAG_NAME, "img")) == 4
    shot("report-served")


def test_a_version_with_no_accepted_rows(browser: Any, shot: Any, tmp_path: Path) -> None:
    for server in _serve(build(tmp_path / "none", make_rows(5, accept=False))):
        browser.get(server.url + "?status=accepted")
        assert browser.find_element(By.ID, "shown").text == "no row matches (0)"
        browser.get(server.url)
        assert browser.find_element(By.ID, "shown").text == "rows 1-20 of 20 matching"
        shot("none-accepted")


def test_a_million_rows_open_in_seconds(browser: Any, shot: Any, tmp_path: Path) -> None:
    version = make_big_version(tmp_path / "big" / "v1", rows=1_000_000)
    started = time.perf_counter()
    for server in _serve(version):
        browser.get(server.url)
        first = time.perf_counter() - started
        assert browser.find_element(By.ID, "shown").text == f"rows 1-{PAGE_SIZE} of 1,000,000 matching"
        # The last page of a filtered view, then a trace in the middle of the data.
        t = time.perf_counter()
        browser.get(server.url + "?status=rejected&reason=math%3Ano_answer&min_tokens=500")
        last = browser.find_element(By.CSS_SELECTOR, "a[rel=last]")
        _follow(browser, last)
        rows = _listed(browser)
        assert rows and all(st == "rejected" for _, _, st in rows)
        browser.get(server.url + "trace?p=p0123456&s=2")
        assert browser.find_element(By.ID, "reasoning").text == f"reasoning of row {4 * 123456 + 2}"
        browsing = time.perf_counter() - t
        shot("million-rows-trace")
    print(f"1M rows: first page {first:.2f} s (open + count + page), filter + last page + trace {browsing:.2f} s")
    assert first < 10 and browsing < 10, (first, browsing)
