"""The runner end to end with the scripted engine (answers from a table) on a real local Ray.

Fast checks of sharding, verification, per-row errors, resume and versioning. The same path runs
with the real vLLM engine in tests/integration.
"""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest

from factory.config import load_config
from factory.runner.driver import generate
from factory.sources.builtin import arithmetic
from factory.store.parts import RunDir
from factory.store.version import list_versions

ROWS = arithmetic()[:12]


def _cfg(tmp_path: Path, **over: object):
    answers = {r["problem"]: [f"Let me think. \\boxed{{{r['answer']}}}", "The answer is \\boxed{-1}"] for r in ROWS}
    answers[ROWS[0]["problem"]] = ["!error", "word " * 100]  # a request error, and a truncated trace
    data = {
        "source": {"builtin": "arithmetic", "limit": 12},
        "teacher": {"engine": "scripted", "engine_kwargs": {"answers": answers}},
        "sampling": {"n": 2, "max_tokens": 50},
        "run": {"shard_size": 5, "progress": False},
        "output": {"store": str(tmp_path / "store"), "name": "t"},
    }
    data.update(over)
    return load_config(None, data=data)


@pytest.fixture(scope="module", autouse=True)
def _ray():
    yield
    import ray

    ray.shutdown()


def test_generate_versions_and_reasons(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, run={"shard_size": 5, "progress": False, "gpu_hour_price": 3.0})
    r1 = generate(cfg)
    st = r1.manifest["run_stats"]
    assert st["engine_ready_s"] is not None
    # Startup and tail figures: the first verified trace came after the engine was ready and no
    # later than the first accepted one; the tail (last completion -> last commit) is measured.
    assert st["engine_ready_s"] <= st["first_verified_s"] <= st["first_accept_s"] <= st["wall_s"]
    # (A scripted engine answers at once: the last completion may come within a millisecond of the
    # first dispatch, and both figures round to the same value.)
    assert 0 < st["tail_s"] <= st["generation_s"]
    assert r1.version_dir.name == "v1" and not r1.resumed
    all_rows = datasets.load_dataset(str(r1.version_dir), "all", split="train")
    default = datasets.load_dataset(str(r1.version_dir), "default", split="train")
    assert len(all_rows) == 24  # every generation kept, accepted or not
    assert len(default) == 11  # sample 0 right for 11 prompts; prompt 0 errored/truncated
    reasons = {r["reject_reason"] for r in all_rows if not r["accepted"]}
    assert reasons == {"engine:ScriptedError", "truncation:truncated", "math:wrong_answer"}
    # No think tags in these completions: the assistant turn is the completion, once (not wrapped
    # as <think>\nX\n</think>\n\nX), and `reasoning` is empty.
    assert all(r["messages"][-1] == {"role": "assistant", "content": r["completion"].strip()} and r["reasoning"] == ""
               for r in default)
    counts = r1.manifest["counts"]
    assert counts["accepted"] == 11 and counts["rejected"] == 13
    # What it cost: tokens of every row, engine-hours of the run, priced by run.gpu_hour_price.
    cost = r1.manifest["cost"]
    assert cost["output_tokens"] == sum(r["num_tokens"] or 0 for r in all_rows) > 0
    assert cost["prompt_tokens"] == sum(r["prompt_tokens"] or 0 for r in all_rows) > 0
    run = cost["run"]
    assert run["output_tokens"] == st["tokens_out"] and run["engines"] == 1
    assert run["engine_hours"] == pytest.approx(st["wall_s"] / 3600, abs=1e-6)
    assert run["estimated_cost"] == pytest.approx(run["device_hours"] * 3.0, abs=1e-4)
    assert (r1.version_dir / "report.html").is_file() and (r1.version_dir / "plots/tokens.png").is_file()
    # Running again makes v2 and leaves v1 byte-identical.
    before = {p: p.read_bytes() for p in r1.version_dir.rglob("*") if p.is_file()}
    r2 = generate(cfg)
    assert r2.version_dir.name == "v2"
    assert before == {p: p.read_bytes() for p in r1.version_dir.rglob("*") if p.is_file()}
    assert [v.version for v in list_versions(tmp_path / "store" / "t")] == ["v1", "v2"]


def test_resume_skips_committed_shards(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    # Simulate a crash after shard 0 was committed: a first run whose engine dies on shard 1+.
    from factory.runner.runstate import open_run

    run_path, resumed = open_run(tmp_path / "store" / "t", cfg)
    assert not resumed
    # Commit shard 0 by hand with a marker row we can recognise after the resume.
    partial = _cfg(tmp_path, source={"builtin": "arithmetic", "limit": 5})
    generate_rows = generate(partial)  # a different config: its own run and version v1
    assert generate_rows.version_dir.name == "v1"
    table = RunDir(generate_rows.run_dir).read_table()
    RunDir(run_path).commit_part(0, table.to_pylist())
    r = generate(cfg)
    assert r.resumed and r.run_dir == run_path
    keys = [(row["prompt_id"], row["sample_index"]) for row in
            datasets.load_dataset(str(r.version_dir), "all", split="train")]
    assert len(keys) == len(set(keys)) == 24  # none lost, none twice


def test_version_build_reads_the_run_a_part_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The driver hands the run itself to the builder. Reading it into one table first made the
    driver's memory grow with the prompt set (BENCHMARKS.md, driver memory)."""
    def whole_run(self: RunDir) -> None:
        raise AssertionError("the version build read the whole run into memory")

    monkeypatch.setattr(RunDir, "read_table", whole_run)
    r = generate(_cfg(tmp_path))
    assert r.manifest["configs"]["all"]["rows"] == 24 and r.manifest["configs"]["default"]["rows"] == 11


# The engine raises (a dead engine core), on either backend; the replica's process dies (an OOM kill,
# a segfault), which only a Ray actor survives: a local replica is the driver's own process.
@pytest.mark.parametrize("death,backend", [("!dead", "local"), ("!dead", "ray"), ("!exit", "ray")])
def test_prompt_that_kills_engines_is_set_aside(tmp_path: Path, death: str, backend: str) -> None:
    """A dead engine is replaced; the prompt that keeps killing it is isolated, set aside with a
    reason, and every other prompt still gets its traces."""
    poison = ROWS[3]["problem"]
    answers = {poison: death}
    cfg = _cfg(tmp_path, teacher={"engine": "scripted", "engine_kwargs": {"answers": answers, "default": "\\boxed{1}"}},
               run={"shard_size": 5, "progress": False, "max_shard_retries": 1, "max_prompt_retries": 1,
                    "backend": backend})
    r = generate(cfg)
    assert r.manifest["teacher"]["backend"] == backend
    rows = datasets.load_dataset(str(r.version_dir), "all", split="train")
    assert len(rows) == 24
    crashed = [x for x in rows if x["reject_reason"] == "engine:engine_crash"]
    assert {x["problem"] for x in crashed} == {poison} and len(crashed) == 2
    assert all(x["error"].startswith("engine_crash: killed the engine 2 times") for x in crashed)
    assert r.manifest["counts"]["rejected_by_reason"]["engine:engine_crash"] == 2
    others = [x for x in rows if x["problem"] != poison]
    assert all(x["finish_reason"] == "stop" for x in others)


def test_adaptive_sampling_stops_after_accepted(tmp_path: Path) -> None:
    # Sample 0 wrong, sample 1 right, later samples right: with stop_after_accepted=1 and rounds of
    # one sample, every prompt stops after sample 1.
    answers = {r["problem"]: ["\\boxed{-1}", f"\\boxed{{{r['answer']}}}"] for r in ROWS}
    cfg = _cfg(tmp_path, teacher={"engine": "scripted", "engine_kwargs": {"answers": answers}},
               sampling={"n": 4, "max_tokens": 50, "stop_after_accepted": 1, "round_size": 1})
    r = generate(cfg)
    rows = datasets.load_dataset(str(r.version_dir), "all", split="train")
    assert len(rows) == 24  # 12 prompts x 2 samples, not x 4
    assert sorted({x["sample_index"] for x in rows}) == [0, 1]
    assert sum(x["accepted"] for x in rows) == 12


def test_sample_ahead_fills_idle_slots_within_the_budget(tmp_path: Path) -> None:
    # 12 open prompts and 64 engine slots: instead of leaving 52 slots idle until the first round
    # is verified, the next samples of those prompts are asked for ahead of their verdict. Each
    # prompt still gets at most n samples, each sample once, and the shard commits once.
    answers = {r["problem"]: ["\\boxed{-1}", "\\boxed{-2}", f"\\boxed{{{r['answer']}}}", "\\boxed{-3}"]
               for r in ROWS}
    cfg = _cfg(tmp_path, teacher={"engine": "scripted", "max_num_seqs": 64, "engine_kwargs": {"answers": answers}},
               sampling={"n": 4, "max_tokens": 50, "stop_after_accepted": 1, "round_size": 1},
               run={"shard_size": 5, "progress": False, "sample_ahead": True})
    r = generate(cfg)
    rows = datasets.load_dataset(str(r.version_dir), "all", split="train")
    keys = [(x["prompt_id"], x["sample_index"]) for x in rows]
    assert len(keys) == len(set(keys))
    per_prompt = {pid: sorted(i for p, i in keys if p == pid) for pid, _ in keys}
    assert len(per_prompt) == 12 and all(s == list(range(len(s))) and len(s) <= 4 for s in per_prompt.values())
    assert len(rows) > 12  # more than round one: samples were asked for ahead
    assert 0 < r.manifest["run_stats"]["asked_ahead"] <= len(rows) - 12
    # Sample 2 is the right one: every prompt reached it, whether asked ahead or in its own round.
    assert sum(x["accepted"] for x in rows) >= 12 and all(len(s) >= 3 for s in per_prompt.values())


def test_sample_ahead_is_off_by_default_for_engines_that_do_not_own_slots(tmp_path: Path) -> None:
    from factory.engines.base import engine_class

    assert engine_class("vllm").accelerator and not engine_class("openai").accelerator
    cfg = _cfg(tmp_path, sampling={"n": 2, "max_tokens": 50, "stop_after_accepted": 1, "round_size": 1})
    assert cfg.run.sample_ahead == "auto"
    r = generate(cfg)  # scripted: auto is off, so each prompt's rounds go out one after another
    assert r.manifest["run_stats"]["asked_ahead"] == 0


def test_same_version_name_in_two_datasets_loads_its_own_rows(tmp_path: Path) -> None:
    # `datasets` keys a local folder's cache on its base name ("v1") and card YAML; the card's
    # dataset_info keeps two datasets' v1 apart (this returned the first one's rows before).
    a = generate(_cfg(tmp_path, source={"builtin": "arithmetic", "limit": 3}))
    b = generate(_cfg(tmp_path, output={"store": str(tmp_path / "store"), "name": "other"}))
    assert len(datasets.load_dataset(str(a.version_dir), "all", split="train")) == 6
    assert len(datasets.load_dataset(str(b.version_dir), "all", split="train")) == 24


def test_incremental_adds_only_new_prompts(tmp_path: Path) -> None:
    first = generate(_cfg(tmp_path, source={"builtin": "arithmetic", "limit": 5}))
    inc = _cfg(tmp_path, source={"builtin": "arithmetic", "limit": 12})
    inc.output.incremental = True
    second = generate(inc)
    assert second.version_dir.name == "v2"
    rows = datasets.load_dataset(str(second.version_dir), "all", split="train")
    keys = [(r["prompt_id"], r["sample_index"]) for r in rows]
    assert len(keys) == len(set(keys)) == 24
    assert second.manifest["run_stats"]["prompts"] == 7  # only the new prompts were generated
    assert second.manifest["parent"] == "v1" and "added 7 prompts" in second.manifest["changelog"][-1]["message"]
    first_rows = datasets.load_dataset(str(first.version_dir), "all", split="train")
    assert {r["prompt_id"] for r in first_rows} <= {r["prompt_id"] for r in rows}


def test_incremental_with_nothing_new_makes_no_version(tmp_path: Path) -> None:
    generate(_cfg(tmp_path, source={"builtin": "arithmetic", "limit": 5}))
    again = _cfg(tmp_path, source={"builtin": "arithmetic", "limit": 5})
    again.output.incremental = True
    r = generate(again)
    assert r.version_dir.name == "v1"
    assert [v.version for v in list_versions(tmp_path / "store" / "t")] == ["v1"]


def test_prefiltered_prompts_are_recorded(tmp_path: Path) -> None:
    src = tmp_path / "p.jsonl"
    src.write_text('{"problem": "What is 2 + 2?", "answer": "4"}\n{"problem": "what is 2 + 2 ?", "answer": "4"}\n')
    cfg = _cfg(tmp_path, source={"path": str(src)})
    r = generate(cfg)
    assert r.manifest["run_stats"]["prefiltered"] == {"duplicate_exact": 1}
    lines = (r.run_dir / "prefiltered.jsonl").read_text().splitlines()
    assert len(lines) == 1 and '"duplicate_exact"' in lines[0]


def test_early_abort_keeps_the_partial_sample_as_a_row(tmp_path: Path) -> None:
    """A looping sample is stopped early and kept in `all` with its partial text, its tokens, the
    reason naming the detector; with adaptive sampling it counts as a sample (never retried)."""
    loop = "Let me check. " + "so 2 + 2 = 4 and " * 100 + "\\boxed{4}"
    answers = {r["problem"]: [loop, f"\\boxed{{{r['answer']}}}"] for r in ROWS}
    cfg = _cfg(tmp_path, teacher={"engine": "scripted", "engine_kwargs": {"answers": answers}},
               sampling={"n": 4, "max_tokens": 1000, "stop_after_accepted": 1, "round_size": 1,
                         "early_abort": {"every_tokens": 16}})
    r = generate(cfg)
    rows = datasets.load_dataset(str(r.version_dir), "all", split="train")
    assert len(rows) == 24  # sample 0 aborted, sample 1 accepted: 2 per prompt, none retried
    aborted = [x for x in rows if x["sample_index"] == 0]
    assert {x["finish_reason"] for x in aborted} == {"abort"}
    assert {x["reject_reason"] for x in aborted} == {"repetition:aborted"}
    full = len(loop.split())
    for x in aborted:
        assert 0 < x["num_tokens"] < full and x["num_tokens"] % 16 == 0
        assert x["completion"] == " ".join(loop.split()[: x["num_tokens"]])
        assert x["verdicts"][0] == {"name": "repetition", "passed": False, "reason": "aborted"}
    assert r.manifest["counts"]["rejected_by_reason"]["repetition:aborted"] == 12
    assert all(x["accepted"] for x in rows if x["sample_index"] == 1)
    # `factory verify` over the version keeps the detector's reason for the aborted rows
    from factory.reverify import open_input, resolve_config, reverify

    inp = open_input(r.version_dir)
    res = reverify(inp, resolve_config(inp), workers=1, progress=False)
    assert res.rejected_by_reason["repetition:aborted"] == 12 and res.accepted == 12
