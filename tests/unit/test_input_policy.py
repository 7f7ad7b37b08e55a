"""The input policy and the input's identity, end to end with the scripted engine (no Ray).

- a run resumed on an edited input refuses, before any engine starts, and never mixes;
- rows that cannot be decoded or lack a reference are rejected at input time, counted per
  reason with their line, never sent to the teacher; too many of them stop the run.
"""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

from factory.config import ConfigError, load_config
from factory.errors import UserError
from factory.runner.driver import generate
from factory.sources import check_input_policy, load_prompts
from factory.store.parts import PartWriter, RunDir


def _write(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _cfg(tmp_path: Path, src: Path, **source: object):
    data = {
        "source": {"path": str(src), **source},
        "teacher": {"engine": "scripted", "engine_kwargs": {"default": "So \\boxed{4}"}},
        "sampling": {"n": 1, "max_tokens": 50},
        "run": {"shard_size": 2, "progress": False, "backend": "local"},
        "output": {"store": str(tmp_path / "store"), "name": "t"},
        "prefilter": None,
    }
    return load_config(None, data=data)


class _Stop(BaseException):
    """Stands for a crash (Ctrl-C, a killed job) right after the first shard is committed."""


def _run_stopped_after_first_shard(cfg, monkeypatch: pytest.MonkeyPatch) -> Path:
    add = PartWriter.add

    def commit_then_die(self: PartWriter, shard_id: int, rows: list) -> None:
        add(self, shard_id, rows)
        self.flush()
        raise _Stop

    monkeypatch.setattr(PartWriter, "add", commit_then_die)
    with pytest.raises(_Stop):
        generate(cfg)
    monkeypatch.setattr(PartWriter, "add", add)
    runs = list((Path(cfg.output.store) / cfg.output.name / ".runs").iterdir())
    assert len(runs) == 1 and len(RunDir(runs[0]).committed_shards()) == 1
    return runs[0]


def test_resume_on_an_edited_input_refuses_and_never_mixes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _write(tmp_path / "p.jsonl", [{"problem": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(6)])
    cfg = _cfg(tmp_path, src)
    run_dir = _run_stopped_after_first_shard(cfg, monkeypatch)
    old_sha = json.loads((run_dir / "run.json").read_text())["input"]["content_sha256"]
    _write(src, [{"problem": f"What is {i} times {i}?", "answer": str(i * i)} for i in range(6)])  # every row edited

    started = []
    monkeypatch.setattr("factory.runner.driver._generate", lambda *a, **k: started.append(1))
    with pytest.raises(UserError) as e:
        generate(cfg)
    msg = str(e.value)
    assert str(src) in msg and old_sha in msg and "--new-run" in msg and "--incremental" in msg
    assert not started  # refused before any engine started
    with pytest.raises(UserError, match="changed since run"):
        generate(cfg, resume_id=run_dir.name)  # naming the run does not get around it
    assert not started and len(RunDir(run_dir).committed_shards()) == 1  # the old run is left as it was
    monkeypatch.undo()

    # A new run holds only the edited problems; the unfinished one is left as it was.
    r = generate(cfg, new_run=True)
    assert not r.resumed and r.run_dir != run_dir
    problems = {x["problem"] for x in datasets.load_dataset(str(r.version_dir), "all", split="train")}
    assert problems == {f"What is {i} times {i}?" for i in range(6)}
    source = r.manifest["source"]
    assert source["content_sha256"] != old_sha and source["content_sha256"] == json.loads(
        (r.run_dir / "run.json").read_text())["input"]["content_sha256"]


def test_resume_on_the_same_input_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _write(tmp_path / "p.jsonl", [{"problem": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(4)])
    cfg = _cfg(tmp_path, src)
    run_dir = _run_stopped_after_first_shard(cfg, monkeypatch)
    r = generate(cfg)
    assert r.resumed and r.run_dir == run_dir
    assert len(datasets.load_dataset(str(r.version_dir), "all", split="train")) == 4


def test_incremental_after_an_edit_starts_a_new_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _write(tmp_path / "p.jsonl", [{"problem": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(4)])
    cfg = _cfg(tmp_path, src)
    _run_stopped_after_first_shard(cfg, monkeypatch)
    _write(src, [{"problem": f"What is {i} times {i}?", "answer": str(i * i)} for i in range(4)])
    cfg.output.incremental = True
    r = generate(cfg)
    assert not r.resumed
    problems = {x["problem"] for x in datasets.load_dataset(str(r.version_dir), "all", split="train")}
    assert problems == {f"What is {i} times {i}?" for i in range(4)}


def test_latin1_file_stops_before_any_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "latin1.jsonl"
    rows = [{"problem": f"Combien font {i} + {i} ? Réponds en français.", "answer": str(2 * i)} for i in range(10)]
    lines = [json.dumps(r, ensure_ascii=False).encode("latin-1" if i >= 2 else "utf-8") for i, r in enumerate(rows)]
    src.write_bytes(b"\n".join(lines) + b"\n")
    cfg = _cfg(tmp_path, src)
    ps = load_prompts(cfg)
    assert dict(ps.input_rejected) == {"not_utf8": 8} and len(ps.prompts) == 2
    assert ps.rejects.first["not_utf8"] == f"{src}:3"
    started = []
    monkeypatch.setattr("factory.runner.driver._generate", lambda *a, **k: started.append(1))
    with pytest.raises(UserError) as e:
        generate(cfg)
    assert "8 of 10 rows rejected" in str(e.value) and f"not_utf8 x8 (first at {src}:3)" in str(e.value)
    assert "iconv" in str(e.value) and "source.max_rejected_fraction" in str(e.value)
    assert not started and not (tmp_path / "store" / "t" / ".runs").exists()


def test_rows_without_a_reference_never_reach_the_teacher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [{"problem": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(8)]
    rows += [{"problem": "What is 9 + 9?"}, {"problem": "What is 7 + 7?", "answer": "  "}]
    src = _write(tmp_path / "p.jsonl", rows)
    cfg = _cfg(tmp_path, src)
    with pytest.raises(UserError, match=r"missing_reference x2 \(first at .*p.jsonl:9\)"):
        generate(cfg)
    cfg.source.max_rejected_fraction = 0.25
    r = generate(cfg)
    out = datasets.load_dataset(str(r.version_dir), "all", split="train")
    assert len(out) == 8 and all(x["reference"] for x in out)
    assert "math:no_reference" not in r.manifest["counts"]["rejected_by_reason"]
    assert r.manifest["run_stats"]["input_rejected"] == {"missing_reference": 2}


def test_no_reference_column_with_a_math_verifier_is_a_config_error(tmp_path: Path) -> None:
    src = _write(tmp_path / "p.jsonl", [{"problem": "1+1?"}])
    cfg = load_config(None, data={"source": {"path": str(src), "columns": {"reference": None}}})
    with pytest.raises(ConfigError, match="math needs a reference.*source.columns.reference=COLUMN"):
        load_prompts(cfg)


def test_a_few_bad_rows_under_the_threshold_are_counted_and_run(tmp_path: Path) -> None:
    rows = [json.dumps({"problem": f"q{i}", "answer": str(i)}) for i in range(199)] + ["{broken"]
    src = tmp_path / "p.jsonl"
    src.write_text("\n".join(rows) + "\n")
    ps = load_prompts(_cfg(tmp_path, src))
    check_input_policy(ps, _cfg(tmp_path, src).source)  # 0.5% <= 1%: goes on
    assert dict(ps.input_rejected) == {"malformed_json_line": 1} and len(ps.prompts) == 199


def test_source_mistakes_say_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_prompts(_cfg(tmp_path, tmp_path))
    with pytest.raises(ConfigError, match=r"--set source.builtin=null"):
        load_config(None, data={"source": {"builtin": "arithmetic", "path": "x.jsonl"}})
    bad = tmp_path / "p.json"
    bad.write_bytes('[{"problem": "caf\xe9", "answer": "1"}]'.encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8.*iconv"):
        load_prompts(_cfg(tmp_path, bad))
