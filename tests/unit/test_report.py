"""The report of a version (plots, report.html, card sections) and what a run cost."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from factory.report.collect import collect
from factory.runner.progress import RunStats, format_duration, summary_table
from factory.store.schema import PART_SCHEMA
from factory.store.version import load_manifest, verify_files
from tests.support.versions import INFO, PAYLOAD, build, make_rows

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def version(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("report") / "ds", make_rows(12))


def test_plots_and_report_are_files_of_the_version(version: Path) -> None:
    m = load_manifest(version)
    listed = {f["path"]: f for f in m["files"]}
    names = [p["path"] for p in m["plots"]]
    assert names == ["plots/pass_rate.png", "plots/length.png", "plots/rejects.png", "plots/tokens.png"]
    for rel in names:
        assert (version / rel).read_bytes().startswith(PNG) and rel in listed
    assert "report.html" in listed and verify_files(version) == []
    assert set(m["configs"]) == {"default", "all"}  # report files belong to no config
    (version / "plots/rejects.png").chmod(0o644)
    (version / "plots/rejects.png").write_bytes(PNG)  # tampered: the manifest check says so
    assert verify_files(version) == ["plots/rejects.png: 8 bytes, manifest says " f"{listed['plots/rejects.png']['bytes']}"]


def test_card_embeds_plots_prompt_examples_input_and_cost(tmp_path: Path) -> None:
    v = build(tmp_path / "ds", make_rows(12))
    card = (v / "README.md").read_text()
    for rel in ("plots/pass_rate.png", "plots/length.png", "plots/rejects.png", "plots/tokens.png"):
        assert f"]({rel})" in card
    assert "Put the answer in \\boxed{}." in card and "You are careful." in card  # the prompt
    assert "ab" * 32 in card and "problems.jsonl" in card  # the input's identity
    examples = load_manifest(v)["examples"]
    assert [e["outcome"] for e in examples] == ["accepted", "rejected", "rejected", "rejected"]
    assert {e["reject_reason"] for e in examples[1:]} == {"math:wrong_answer", "truncation:truncated",
                                                         "math:no_answer"}
    assert "### rejected: `math:wrong_answer`" in card and "### accepted" in card
    # The example with HTML in it stays inside a code fence: shown, never rendered.
    at = card.index(PAYLOAD)
    assert card[:at].rstrip().endswith("```text\nWhat is 0 + 0?") and card[at + len(PAYLOAD):].startswith("\n```")
    assert "estimated cost (2.5 per cpu-hour) | 5" in card and "engine-hours (1 engine(s) x 7200.0 s" in card


def test_cost_counts_every_row(version: Path) -> None:
    m = load_manifest(version)
    table = pq.read_table(version / "data/all", schema=None)
    cost = m["cost"]
    assert cost["prompt_tokens"] == pa.compute.sum(table["prompt_tokens"]).as_py()
    assert cost["output_tokens"] == pa.compute.sum(table["num_tokens"]).as_py()
    assert cost["run"]["engine_hours"] == 2.0 and cost["run"]["device_hours"] == 2.0
    assert cost["run"]["estimated_cost"] == 5.0


def test_report_html_is_self_contained_and_escaped(version: Path) -> None:
    page = (version / "report.html").read_text()
    assert "<script" not in page.replace("&lt;script", "")  # only the escaped payload
    assert "&lt;script&gt;document.title=&#x27;PWNED&#x27;&lt;/script&gt;" in page
    assert "http://" not in page and "https://" not in page and 'src="data:image/png;base64,' in page
    assert "Content-Security-Policy" in page and "default-src 'none'" in page


def test_no_accepted_rows(tmp_path: Path) -> None:
    v = build(tmp_path / "ds", make_rows(4, accept=False))
    m = load_manifest(v)
    assert m["counts"]["accepted"] == 0 and verify_files(v) == []
    assert [e["outcome"] for e in m["examples"]] == ["rejected"] * 3
    assert "No trace was accepted" in (v / "report.html").read_text()


def test_collect_reads_row_groups_and_counts_rounds(tmp_path: Path) -> None:
    rows = make_rows(30)
    path = tmp_path / "all.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=PART_SCHEMA), path, row_group_size=7)
    data = collect([path], {"n": 4, "max_tokens": 400, "stop_after_accepted": 1, "round_size": 2})
    assert data.rows == 120 and data.rounds == 2  # samples 0-1 are round 1, 2-3 round 2
    assert sum(data.token_spend.values()) == sum(r["num_tokens"] for r in rows) == data.output_tokens
    assert sum(data.reasons.values()) == sum(not r["accepted"] for r in rows)
    assert data.pass_rates() == Counter((i % 5) / 4 for i in range(30))
    # The version build has every prompt's counts already: given, the files' prompts are not counted again.
    assert collect([path], {"n": 4}, prompt_counts=[(1, 4), (1, 4)]).pass_rates() == Counter({0.25: 2})
    assert data.budget == 400
    one_round = collect([path], {"n": 4})
    assert one_round.rounds == 1 and one_round.budget is None


def test_eta_once_the_rate_is_known() -> None:
    s = RunStats(prompts_total=100, prompts_done=20, prompts_resumed=20)
    assert s.eta_seconds() is None  # nothing done in this run yet: no rate
    s.gen_started = 0.0
    s.gen_finished = 30.0
    s.prompts_done = 50  # 30 in 30 s -> 50 left take 50 s
    assert s.eta_seconds() == pytest.approx(50.0)
    s.prompts_done = 100
    assert s.eta_seconds() == 0.0
    assert [format_duration(x) for x in (42, 185, 3720)] == ["42s", "3m05s", "1h02m"]


def test_summary_shows_tokens_and_cost(version: Path) -> None:
    out = io.StringIO()
    Console(file=out, width=150).print(summary_table(load_manifest(version)))
    text = out.getvalue()
    assert "prompt tokens (version)" in text and "output tokens (version)" in text
    assert "engine-hours (1 engine(s))" in text and "estimated cost (2.5/cpu-hour)" in text
    assert json.dumps(load_manifest(version)["cost"]["output_tokens"]) in text.replace(",", "")


def test_gpu_hour_price_is_checked_and_not_part_of_the_fingerprint(capsys: pytest.CaptureFixture[str]) -> None:
    from factory.cli import main
    from factory.config import load_config

    repo = Path(__file__).resolve().parents[2]
    assert main(["generate", str(repo / "configs/default.yaml"), "--gpu-hour-price", "-1"]) == 2
    assert "run.gpu_hour_price" in capsys.readouterr().err  # the key to fix, no traceback
    plain = load_config(repo / "configs/default.yaml")
    priced = load_config(repo / "configs/default.yaml", ["run.gpu_hour_price=2.5"])
    assert priced.run.gpu_hour_price == 2.5 and priced.fingerprint() == plain.fingerprint()
