"""Sources: bad rows are counted with a reason; a wrong column stops the run with the fix."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from factory.config import ConfigError, load_config
from factory.sources.prompting import build_messages
from factory.sources import load_prompts
from factory.sources.builtin import arithmetic


def _cfg(path: Path, **columns: str | None):
    data = {"source": {"path": str(path), "columns": columns or {"problem": "problem", "reference": "answer"}}}
    return load_config(None, data=data)


def test_builtin_set_is_deterministic_and_distinct() -> None:
    a, b = arithmetic(), arithmetic()
    assert a == b and len(a) == 300
    assert len({r["problem"] for r in a}) == 300
    easy = sum(r["kind"] in {"addition", "subtraction"} for r in a)
    assert easy > 100  # enough easy ones for the tiny teacher


def test_jsonl_bad_rows_are_counted_not_fatal(tmp_path: Path) -> None:
    f = tmp_path / "p.jsonl"
    lines = [
        json.dumps({"problem": "1+1?", "answer": "2"}),
        "{not json",  # malformed line
        json.dumps({"problem": "", "answer": "0"}),  # empty problem
        json.dumps({"problem": 7, "answer": "7"}),  # not a string
        json.dumps([1, 2]),  # not an object
        json.dumps({"problem": "1+1?", "answer": "2"}),  # duplicate content -> same id
        json.dumps({"problem": "What is {x}?", "answer": "3"}),  # braces must survive templating
    ]
    f.write_text("\n".join(lines) + "\n")
    ps = load_prompts(_cfg(f))
    assert [p.problem for p in ps.prompts] == ["1+1?", "What is {x}?"]
    assert dict(ps.input_rejected) == {
        "malformed_json_line": 1, "empty_problem": 1, "problem_not_a_string": 1,
        "row_not_an_object": 1, "duplicate_id": 1,
    }
    assert "What is {x}?" in ps.prompts[1].messages[-1]["content"]
    assert [p.index for p in ps.prompts] == [0, 1]


def test_missing_column_lists_the_columns(tmp_path: Path) -> None:
    f = tmp_path / "p.parquet"
    pq.write_table(pa.table({"question": ["a"], "solution": ["1"]}), f)
    with pytest.raises(ConfigError) as e:
        load_prompts(_cfg(f))
    assert "'problem'" in str(e.value) and "question, solution" in str(e.value)
    ps = load_prompts(_cfg(f, problem="question", reference="solution"))
    assert ps.prompts[0].problem == "a" and ps.prompts[0].reference == "1"


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_prompts(_cfg(tmp_path / "nope.jsonl"))


def test_id_column_limit_and_shuffle(tmp_path: Path) -> None:
    f = tmp_path / "p.jsonl"
    f.write_text("".join(json.dumps({"id": i, "problem": f"q{i}", "answer": str(i)}) + "\n" for i in range(10)))
    cfg = load_config(None, data={"source": {"path": str(f), "columns": {"problem": "problem", "reference": "answer",
                                                                          "id": "id"}, "limit": 4, "shuffle_seed": 1}})
    a, b = load_prompts(cfg), load_prompts(cfg)
    assert [p.prompt_id for p in a.prompts] == [p.prompt_id for p in b.prompts]
    assert len(a.prompts) == 4 and [p.prompt_id for p in a.prompts] != ["0", "1", "2", "3"]


def test_system_prompt_and_template() -> None:
    cfg = load_config(None, data={"source": {"builtin": "arithmetic"},
                                  "prompt": {"system": "Be brief.", "template": "Q: {problem}"}})
    assert build_messages(cfg.prompt, "2+2? \\boxed{}") == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q: 2+2? \\boxed{}"}]
