"""Each piece of text once in `messages`; rows written the doubled way are recognised and reported."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from factory.store.schema import count_doubled, is_doubled, trace_row
from factory.types import Completion, Prompt, Trace, Verdict
from factory.verifiers.parsing import make_trace

REPO = Path(__file__).resolve().parents[2]
PROMPT = Prompt("p1", 0, "What is 2 + 2?", "4", [{"role": "user", "content": "What is 2 + 2?"}], "test")


def _row(text: str, reasoning_content: str | None = None) -> dict:
    c = Completion("p1", 0, text, "stop", reasoning_content=reasoning_content)
    return trace_row(make_trace(PROMPT, c), [Verdict("math", True)])


def test_no_reasoning_block_is_the_completion_as_written() -> None:
    row = _row("2 plus 2 makes 4. So \\boxed{4}\n")
    assert row["messages"][-1] == {"role": "assistant", "content": "2 plus 2 makes 4. So \\boxed{4}"}
    assert row["reasoning"] == "" and row["completion"] == "2 plus 2 makes 4. So \\boxed{4}\n"
    assert not is_doubled(row["messages"][-1]["content"])


def test_a_reasoning_block_is_kept_once_then_the_answer() -> None:
    row = _row("<think>two and two</think>\nThe answer is \\boxed{4}")
    assert row["messages"][-1]["content"] == "<think>\ntwo and two\n</think>\n\nThe answer is \\boxed{4}"
    assert row["reasoning"] == "two and two"
    # The engine split it off (vLLM's reasoning parser): same shape.
    row = _row("The answer is \\boxed{4}", reasoning_content="two and two")
    assert row["messages"][-1]["content"] == "<think>\ntwo and two\n</think>\n\nThe answer is \\boxed{4}"


def test_doubled_rows_are_recognised() -> None:
    assert is_doubled("<think>\nSo \\boxed{4}\n</think>\n\nSo \\boxed{4}")
    assert not is_doubled("<think>\nwork\n</think>\n\nSo \\boxed{4}")
    assert not is_doubled("So \\boxed{4}") and not is_doubled("<think>\n\n</think>\n\n")
    msgs = [[{"role": "user", "content": "q"}, {"role": "assistant", "content": "<think>\nX\n</think>\n\nX"}],
            [{"role": "user", "content": "q"}, {"role": "assistant", "content": "X"}], None]
    assert count_doubled(msgs) == 1


def test_verify_reports_doubled_rows(tmp_path: Path) -> None:
    f = tmp_path / "old.parquet"
    doubled = "<think>\nSo \\boxed{4}\n</think>\n\nSo \\boxed{4}"
    rows = [{"problem": "What is 2 + 2?", "reference": "4", "completion": "So \\boxed{4}",
             "messages": [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": c}]}
            for c in (doubled, doubled, "So \\boxed{4}")]
    pq.write_table(pa.Table.from_pylist(rows), f)
    proc = subprocess.run([sys.executable, "-m", "factory.cli", "verify", str(f), "--verifiers", "truncation",
                           "--no-progress"], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"text doubled in messages \(<think>X</think>X\)\W+2\b", proc.stdout), proc.stdout
    from factory.reverify import read_metadata

    assert read_metadata(tmp_path / "old.verified.parquet")["counts"]["doubled"] == 2


def test_inspect_reports_doubled_rows(tmp_path: Path) -> None:
    from factory.store.parts import RunDir
    from factory.store.version import build_version
    from tests.unit.test_store import INFO, make_rows

    rows = make_rows({"a": 0, "b": 1})
    for r in rows[:3]:  # written the old way
        r["messages"][-1]["content"] = f"<think>\n{r['completion']}\n</think>\n\n{r['completion']}"
    run = RunDir(tmp_path / "run")
    run.commit_part(0, rows)
    vdir = build_version(tmp_path / "ds", run, INFO)
    proc = subprocess.run([sys.executable, "-m", "factory.cli", "inspect", str(vdir)], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "COLUMNS": "300"})
    assert proc.returncode == 0, proc.stderr
    assert "3 of 4 rows hold their text twice" in proc.stdout
