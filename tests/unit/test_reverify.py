"""`factory verify`: existing traces re-verified without generating. Real math-verify (through the
verifiers), real pyarrow and datasets; the CLI through factory.cli.main."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from factory.cli import main
from factory.config import ConfigError
from factory.reverify import (
    default_output,
    open_input,
    output_schema,
    read_metadata,
    resolve_config,
    reverify,
    row_trace,
)
from factory.reverify.run import _progress
from factory.store.schema import PART_SCHEMA, trace_row
from factory.store.version import build_version, list_versions, read_version_table
from factory.types import Completion, Prompt, Trace, Verdict


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def verify(*args: str) -> int:
    return main(["verify", *args, "--workers", "1", "--no-progress"])


def by_problem(path: Path) -> dict[str, dict[str, Any]]:
    return {r["problem"]: r for r in pq.read_table(path).to_pylist()}


def names(row: dict[str, Any]) -> list[tuple[str, bool | None, str | None]]:
    return [(v["name"], v["passed"], v["reason"]) for v in row["verdicts"]]


# ----------------------------------------------------------------------------- files


def test_jsonl_messages_only_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def msgs(problem: str, answer: str) -> list[dict[str, str]]:
        return [{"role": "system", "content": "Think."}, {"role": "user", "content": problem},
                {"role": "assistant", "content": f"<think>\nwork\n</think>\n\n{answer}"}]

    rows = [
        {"messages": msgs("Half of one?", "\\boxed{\\frac{1}{2}}"), "reference": "0.5", "row_id": 1},
        {"messages": msgs("Half of one?", "\\boxed{0.4}"), "reference": "0.5", "row_id": 2},
        # sympy decides this one: real math-verify in a worker process
        {"messages": msgs("Rationalise 1/sqrt(2).", "\\boxed{\\frac{\\sqrt{2}}{2}}"),
         "reference": "\\frac{1}{\\sqrt{2}}", "row_id": 3},
        {"messages": msgs("x^2 = 4, x > 0?", "\\boxed{x = 2}"), "reference": "2", "row_id": 4},
    ]
    src = write_jsonl(tmp_path / "sft.jsonl", rows)
    assert verify(str(src)) == 0
    out = tmp_path / "sft.verified.parquet"
    t = pq.read_table(out)
    # input columns first, in their order; then ids and verdict columns
    assert t.column_names == ["messages", "reference", "row_id", "prompt_id", "sample_index", "reasoning",
                              "extracted_answer", "accepted", "reject_reason", "verdicts", "pass_rate"]
    got = {r["row_id"]: r for r in t.to_pylist()}
    assert [got[i]["accepted"] for i in (1, 2, 3, 4)] == [True, False, True, True]
    assert names(got[2]) == [("truncation", True, None), ("math", False, "wrong_answer (boxed)")]
    assert got[2]["reject_reason"] == "math:wrong_answer" and got[2]["extracted_answer"] == "0.4"
    assert got[3]["extracted_answer"] == "\\frac{\\sqrt{2}}{2}" and got[1]["reasoning"] == "work"
    # no problem column: the last user message is the problem; samples of one prompt share its id
    assert got[1]["prompt_id"] == got[2]["prompt_id"] != got[3]["prompt_id"]
    assert [got[1]["sample_index"], got[2]["sample_index"], got[3]["sample_index"]] == [0, 1, 0]
    assert [got[i]["pass_rate"] for i in (1, 2, 3)] == [0.5, 0.5, 1.0]
    assert got[1]["messages"] == rows[0]["messages"]  # input kept as it was
    printed = capsys.readouterr().out
    assert "math:wrong_answer" in printed and "truncation" in printed and str(out) in printed.replace("\n", "")
    meta = read_metadata(out)
    assert meta["counts"]["accepted"] == 3 and [v["name"] for v in meta["verifiers"]] == ["truncation", "math"]


def test_parquet_input_replaces_stale_verdict_columns(tmp_path: Path) -> None:
    import datasets

    rows = [
        # a stale `accepted` (a string here) and reject_reason from some other tool: replaced
        {"problem": "2+2?", "completion": "It is \\boxed{4}.", "reference": "4", "finish_reason": "stop",
         "accepted": "no", "reject_reason": "old", "score": 0.1},
        {"problem": "2+3?", "completion": "It is \\boxed{6}.", "reference": "5", "finish_reason": "stop",
         "accepted": "yes", "reject_reason": None, "score": 0.9},
        {"problem": "2+4?", "completion": "It is \\boxed{6", "reference": "6", "finish_reason": "length",
         "accepted": "yes", "reject_reason": None, "score": 0.5},
    ]
    src = tmp_path / "scored.parquet"
    datasets.Dataset.from_list(rows).to_parquet(str(src))  # carries `huggingface` schema metadata
    before = src.read_bytes()
    assert verify(str(src)) == 0
    assert src.read_bytes() == before
    out = tmp_path / "scored.verified.parquet"
    got = by_problem(out)
    assert [got[p]["accepted"] for p in ("2+2?", "2+3?", "2+4?")] == [True, False, False]
    assert got["2+3?"]["reject_reason"] == "math:wrong_answer"
    assert got["2+4?"]["reject_reason"] == "truncation:truncated"
    assert got["2+2?"]["score"] == 0.1 and got["2+2?"]["reject_reason"] is None
    assert pq.read_schema(out).field("accepted").type == pa.bool_()
    # the output loads with `datasets`: the input's stale feature metadata was not carried over
    ds = datasets.load_dataset("parquet", data_files=str(out), split="train")
    assert ds.column_names[:7] == ["problem", "completion", "reference", "finish_reason", "accepted",
                                   "reject_reason", "score"]
    assert ds.features["accepted"].dtype == "bool" and len(ds) == 3


def test_bad_rows_become_rows_with_a_reason(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "mixed.jsonl", [
        {"problem": "ok?", "completion": "\\boxed{1}", "reference": "1"},
        {"problem": None, "completion": "\\boxed{1}", "reference": "1"},
        {"problem": "   ", "completion": "\\boxed{1}", "reference": "1"},
        {"problem": "no completion", "reference": "1"},
        {"problem": "odd tokens", "completion": "\\boxed{1}", "reference": "1", "num_tokens": "many"},
        "{this is not json",
        "[1, 2]",
        {"problem": "no reference", "completion": "\\boxed{1}"},
        {"problem": "empty", "completion": "", "reference": "1"},  # empty is data, not missing
    ])
    assert verify(str(src), "--batch-size", "4") == 0
    t = pq.read_table(tmp_path / "mixed.verified.parquet").to_pylist()
    assert [r["reject_reason"] for r in t] == [
        None, "input:missing_problem", "input:missing_problem", "input:missing_completion",
        "input:malformed_row", "input:invalid_json", "input:not_an_object", "math:no_reference", "math:no_answer"]
    assert t[1]["verdicts"] == [{"name": "input", "passed": False, "reason": "missing_problem"}]
    assert t[5]["problem"] is None and t[5]["accepted"] is False


def test_pass_rate_and_ids_across_batches(tmp_path: Path) -> None:
    rows = [{"problem": "p1" if i % 2 else "p2", "completion": f"\\boxed{{{i}}}", "reference": "3"}
            for i in range(7)]  # p1 gets 1,3,5 (one right); p2 gets 0,2,4,6 (none right)
    src = write_jsonl(tmp_path / "r.jsonl", rows)
    inp = open_input(src, batch_rows=2)
    res = reverify(inp, resolve_config(inp, verifiers=["math"]), workers=1, batch_rows=2, progress=False)
    t = pq.read_table(res.out).to_pylist()
    assert [r["pass_rate"] for r in t] == [0.0, 1 / 3] * 3 + [0.0]
    assert [r["sample_index"] for r in t] == [0, 0, 1, 1, 2, 2, 3]
    assert res.rows == 7 and res.accepted == 1 and res.rejected_by_reason == {"math:wrong_answer": 6}
    assert res.verifiers == {"math": {"passed": 1, "failed": 6, "unknown": 0}}


def test_extraction_mode(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "a.jsonl", [
        {"problem": "p", "completion": "So the answer is 42.", "reference": "42", "finish_reason": "stop"}])
    assert verify(str(src), "--out", str(tmp_path / "final.parquet")) == 0
    assert verify(str(src), "--extraction", "boxed", "--out", str(tmp_path / "boxed.parquet")) == 0
    assert verify(str(src), "--extraction", "answer_is", "--out", str(tmp_path / "is.parquet")) == 0
    assert pq.read_table(tmp_path / "final.parquet")["accepted"].to_pylist() == [True]  # the default
    assert pq.read_table(tmp_path / "boxed.parquet")["reject_reason"].to_pylist() == ["math:no_answer"]
    assert pq.read_table(tmp_path / "is.parquet")["accepted"].to_pylist() == [True]
    assert read_metadata(tmp_path / "is.parquet")["extraction"] == "answer_is"
    # without a math verifier the mode still decides what is extracted
    assert verify(str(src), "--verifiers", "nonempty_answer", "--extraction", "answer_is",
                  "--out", str(tmp_path / "ne.parquet")) == 0
    assert pq.read_table(tmp_path / "ne.parquet")["extracted_answer"].to_pylist() == ["42"]


def test_code_rows_with_a_tests_column(tmp_path: Path) -> None:
    tests = {"inputs": ["2 3\n"], "outputs": ["5\n"]}
    src = write_jsonl(tmp_path / "code.jsonl", [
        {"problem": "add", "completion": "```python\na, b = map(int, input().split())\nprint(a + b)\n```",
         "tests": tests, "finish_reason": "stop"},
        {"problem": "add", "completion": "```python\nprint(6)\n```", "tests": tests, "finish_reason": "stop"},
    ])
    inp = open_input(src)
    assert [s.name for s in resolve_config(inp).verifiers] == ["truncation", "code"]  # tests -> code
    assert verify(str(src)) == 0
    t = pq.read_table(tmp_path / "code.verified.parquet").to_pylist()
    assert [r["accepted"] for r in t] == [True, False]
    assert t[1]["reject_reason"] == "code:wrong_answer (0/1 passed)"


# ----------------------------------------------------------------------------- a version dir


def _rows() -> list[dict[str, Any]]:
    """Rows as a run wrote them, with verdicts that a re-check corrects."""
    out = []
    for pid, index, problem, ref in (("a", 0, "6*7?", "42"), ("b", 1, "10-3?", "7")):
        p = Prompt(pid, index, problem, ref, [{"role": "user", "content": problem}], "test:unit")
        for s, answer in enumerate((ref, "41")):
            c = Completion(pid, s, f"\\boxed{{{answer}}}", "stop", prompt_tokens=5, num_tokens=20,
                           reasoning_content=f"thinking about {problem}")  # engine split the reasoning
            t = Trace(p, c, c.reasoning_content or "", c.text, True, True, answer)
            # stale: an older math check that accepted everything
            out.append(trace_row(t, [Verdict("think_format", True), Verdict("math", True, "correct")]))
    p = Prompt("c", 2, "1+1?", "2", [{"role": "user", "content": "1+1?"}], "test:unit")
    c = Completion("c", 0, "", "error", error="TimeoutError: slow")
    out.append(trace_row(Trace(p, c, "", "", False, False, None), [Verdict("engine", False, "TimeoutError")]))
    return out


INFO = {
    "config": {"teacher": {"expects_think_tags": True},
               "verifiers": [{"name": "think_format"}, {"name": "math", "timeout_s": 5.0}]},
    "teacher": {"model": "tiny"},
    "verifiers": [{"name": "think_format", "version": "1", "params": {}},
                  {"name": "math", "version": "1", "params": {}}],
    "run_id": "run-1",
}


def _snapshot(d: Path) -> dict[str, bytes]:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_version_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    v1 = build_version(tmp_path / "store" / "ds", pa.Table.from_pylist(_rows(), schema=PART_SCHEMA), INFO)
    before = _snapshot(v1)
    inp = open_input(v1)
    cfg = resolve_config(inp)
    assert [s.name for s in cfg.verifiers] == ["think_format", "math"] and cfg.teacher.expects_think_tags
    assert verify(str(v1)) == 0
    out = tmp_path / "store" / "ds" / "v1.verified.parquet"
    assert default_output(inp) == out
    assert _snapshot(v1) == before and [v.version for v in list_versions(v1.parent)] == ["v1"]
    t = pq.read_table(out)
    assert t.schema.names == read_version_table(v1, "all").schema.names  # the `all` shape, unchanged
    rows = {(r["prompt_id"], r["sample_index"]): r for r in t.to_pylist()}
    assert rows[("a", 0)]["accepted"] is True and rows[("a", 1)]["reject_reason"] == "math:wrong_answer"
    # the separately stored reasoning is handed back: the think-format check still passes
    assert names(rows[("a", 1)])[0] == ("think_format", True, None)
    assert rows[("a", 0)]["reasoning"] == "thinking about 6*7?"
    assert rows[("c", 0)]["reject_reason"] == "engine:TimeoutError"
    assert [rows[(p, 0)]["pass_rate"] for p in "abc"] == [0.5, 0.5, 0.0]
    printed = capsys.readouterr().out
    assert "math:wrong_answer" in printed and "engine:TimeoutError" in printed

    # --verifiers replaces the version's list; STORE/NAME means its newest version
    assert verify(str(v1.parent), "--verifiers", "truncation", "--out", str(tmp_path / "trunc.parquet")) == 0
    t2 = pq.read_table(tmp_path / "trunc.parquet").to_pylist()
    assert sum(r["accepted"] for r in t2) == 4 and {names(r)[-1][0] for r in t2} == {"truncation"}


def test_never_overwrites_the_input_or_a_version(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    v1 = build_version(tmp_path / "store" / "ds", pa.Table.from_pylist(_rows(), schema=PART_SCHEMA), INFO)
    before = _snapshot(v1)
    data_file = next((v1 / "data" / "all").glob("*.parquet"))
    assert verify(str(v1), "--out", str(data_file), "--overwrite") == 2
    assert verify(str(v1), "--out", str(v1 / "extra.parquet")) == 2
    assert "immutable" in capsys.readouterr().err
    assert _snapshot(v1) == before

    src = write_jsonl(tmp_path / "in.jsonl", [{"problem": "p", "completion": "\\boxed{1}", "reference": "1"}])
    original = src.read_bytes()
    assert verify(str(src), "--out", str(src), "--overwrite") == 2
    assert "never rewrites its input" in capsys.readouterr().err
    assert src.read_bytes() == original
    out = tmp_path / "in.verified.parquet"
    out.write_bytes(b"an earlier result")
    assert verify(str(src)) == 2 and "--overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"an earlier result"
    assert verify(str(src), "--overwrite") == 0
    assert pq.read_table(out)["accepted"].to_pylist() == [True]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "in.verified.parquet", "store"]  # no temp left


@pytest.mark.parametrize("rows, args, message", [
    ([{"question": "q", "completion": "c", "reference": "1"}], [], "needs columns `problem` and `completion`"),
    ([{"problem": "q", "completion": "c"}], [], "need a `reference` (math) or `tests` (code)"),
    ([{"problem": "q", "completion": "c", "reference": "1"}], ["--verifiers", "maths"], "unknown verifier 'maths'"),
    ([{"problem": "q", "completion": "c", "reference": "1"}], ["--extraction", "last"], "--extraction 'last' unknown"),
])
def test_user_errors_name_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str], rows: list[Any],
                                  args: list[str], message: str) -> None:
    src = write_jsonl(tmp_path / "x.jsonl", rows)
    assert verify(str(src), *args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.verified.parquet").exists()


def test_columns_of_mixed_types_are_read_as_text(tmp_path: Path) -> None:
    """JSONL answers are often numbers on some lines and LaTeX strings on others."""
    src = write_jsonl(tmp_path / "m.jsonl", [
        {"problem": "a", "completion": "\\boxed{42}", "reference": 42, "meta": {"k": 1}},
        {"problem": "b", "completion": "\\boxed{0.5}", "reference": "\\frac{1}{2}", "meta": "plain"},
        {"problem": "c", "completion": "\\boxed{0.25}", "reference": 0.25, "meta": None},
    ])
    assert verify(str(src)) == 0
    t = pq.read_table(tmp_path / "m.verified.parquet")
    assert t.schema.field("reference").type == pa.string()
    assert t["reference"].to_pylist() == ["42", "\\frac{1}{2}", "0.25"]
    assert t["meta"].to_pylist() == ['{"k": 1}', "plain", None]
    assert t["accepted"].to_pylist() == [True, True, True]


def test_missing_input_and_unknown_type(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert verify(str(tmp_path / "nope.jsonl")) == 2
    (tmp_path / "x.csv").write_text("a,b\n")
    assert verify(str(tmp_path / "x.csv")) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "unsupported file type '.csv'" in err


def test_config_yaml_and_set(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "t.jsonl", [{"problem": "p", "completion": "\\boxed{1}", "reference": "1"}])
    cfg_file = tmp_path / "v.yaml"
    cfg_file.write_text("verifiers:\n  - name: truncation\n  - name: length\n    min_chars: 100\n")
    inp = open_input(src)
    cfg = resolve_config(inp, cfg_file, overrides=["teacher.expects_think_tags=true"])
    assert [s.name for s in cfg.verifiers] == ["truncation", "length"] and cfg.teacher.expects_think_tags
    with pytest.raises(ConfigError, match="min_char"):
        cfg_file.write_text("verifiers:\n  - name: length\n    min_char: 100\n")
        resolve_config(inp, cfg_file)
    cfg_file.write_text("verifiers:\n  - name: truncation\n  - name: length\n    min_chars: 100\n")
    assert verify(str(src), "--config", str(cfg_file)) == 0
    assert pq.read_table(tmp_path / "t.verified.parquet")["reject_reason"].to_pylist() == ["length:too_short"]


def test_row_trace_and_schema_units() -> None:
    row = {"problem": "p", "completion": None, "reference": 7, "finish_reason": None,
           "messages": [{"role": "user", "content": "p"}, {"role": "assistant", "content": "<think>w</think>\\boxed{7}"}]}
    t = row_trace(row, "id", 0, 0, "boxed")
    assert not isinstance(t, str)
    assert t.prompt.reference == "7" and t.extracted_answer == "7" and t.reasoning == "w"
    assert t.completion.finish_reason is None  # unknown stays unknown
    assert row_trace({"problem": "p", "reference": "1", "messages": [{"role": "user", "content": "p"}]},
                     "id", 0, 0, "boxed") == "missing_completion"
    s = output_schema(pa.schema([("verdicts", pa.string()), ("x", pa.int64())]))
    assert s.names == ["verdicts", "x", "prompt_id", "sample_index", "reasoning", "extracted_answer",
                       "accepted", "reject_reason", "pass_rate"]
    assert s.field("verdicts").type == PART_SCHEMA.field("verdicts").type


def test_progress_bar_only_for_large_inputs() -> None:
    assert _progress(1000, None) is None and _progress(5000, False) is None
    assert _progress(1001, None) is not None


def test_many_rows_in_batches(tmp_path: Path) -> None:
    """2,500 rows in batches of 1,000: exact-number answers (decided without sympy) keep it fast."""
    rows = [{"problem": f"p{i % 500}", "completion": f"\\boxed{{{i % 3}}}", "reference": "0"} for i in range(2500)]
    src = write_jsonl(tmp_path / "big.jsonl", rows)
    inp = open_input(src)
    res = reverify(inp, resolve_config(inp), workers=1, progress=True)
    t = pq.read_table(res.out)
    assert t.num_rows == 2500 and res.accepted == sum(1 for i in range(2500) if i % 3 == 0)
    assert pq.ParquetFile(res.out).metadata.num_row_groups == 3  # one per batch: never all in memory at once
    assert pq.ParquetFile(res.out).metadata.row_group(0).column(0).compression == "ZSTD"


def test_agreement_with_an_expected_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A user's own labelled cases: the verifier is scored against them.
    rows = [
        {"problem": "p", "completion": "\\boxed{\\frac{1}{2}}", "reference": "0.5", "expected": "correct"},
        {"problem": "p", "completion": "\\boxed{1 + \\frac{1}{\\mathrm{e}}}", "reference": "1 - \\frac{1}{\\mathrm{e}}",
         "expected": "wrong"},
        {"problem": "p", "completion": "\\boxed{4 4/9}", "reference": "\\frac{40}{9}", "expected": "yes"},
        {"problem": "p", "completion": "\\boxed{2}", "reference": "3", "expected": "true"},  # a wrong label
        {"problem": "p", "completion": "\\boxed{2}", "reference": "2", "expected": ""},  # unlabelled
    ]
    src = write_jsonl(tmp_path / "labelled.jsonl", rows)
    assert verify(str(src), "--verifiers", "math") == 0
    printed = capsys.readouterr().out
    assert "agreement with the `expected` column" in printed and "3 (75.0%)" in printed
    meta = read_metadata(tmp_path / "labelled.verified.parquet")
    assert meta["counts"]["agreement"] == {"labelled": 4, "agree": 3, "agreement": 0.75, "false_accepts": 0,
                                           "false_rejects": 1, "cannot_tell": 0}
    plain = write_jsonl(tmp_path / "plain.jsonl", [{k: v for k, v in r.items() if k != "expected"} for r in rows])
    assert verify(str(plain), "--verifiers", "math") == 0
    assert "agreement with the" not in capsys.readouterr().out
