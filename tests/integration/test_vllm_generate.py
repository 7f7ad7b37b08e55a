"""`factory generate` with the real vLLM engine on Ray: the version written, checked by a reader.

Every verdict here is recomputed independently with math-verify, so a runner that mislabels
traces fails these tests.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest
from math_verify import parse, verify

from factory.store.schema import ALL_SCHEMA, DEFAULT_SCHEMA, is_doubled
from factory.store.version import list_versions, verify_files
from tests.support.procs import alive, kill_our_ray, pids_named

from .conftest import ROOT, factory_cmd, run_factory

pytestmark = pytest.mark.integration


def _load(vdir: Path, config: str) -> datasets.Dataset:
    return datasets.load_dataset(str(vdir), config, split="train")


def test_version_rows_and_schema(vllm_store: Path) -> None:
    v1 = vllm_store / "it" / "v1"
    all_rows, default = _load(v1, "all"), _load(v1, "default")
    assert len(all_rows) == 6 * 2  # every generation is kept
    keys = {(r["prompt_id"], r["sample_index"]) for r in all_rows}
    assert len(keys) == 12
    assert len(default) == sum(r["accepted"] for r in all_rows)
    for f in (v1 / "data" / "all").glob("*.parquet"):
        assert pq.read_schema(f).names == ALL_SCHEMA.names
    for f in (v1 / "data" / "default").glob("*.parquet"):
        assert pq.read_schema(f).names == DEFAULT_SCHEMA.names
    assert verify_files(v1) == []
    manifest = json.loads((v1 / "manifest.json").read_text())
    assert manifest["teacher"]["engine"] == "vllm" and manifest["teacher"]["engine_version"].startswith("vllm")
    assert manifest["counts"]["generations"] == 12
    assert manifest["run_stats"]["tokens_out"] == sum(r["num_tokens"] for r in all_rows) > 0
    # The report: plots beside the card, embedded in it, and report.html; what the run cost.
    card = (v1 / "README.md").read_text()
    for p in manifest["plots"]:
        assert (v1 / p["path"]).read_bytes().startswith(b"\x89PNG") and f"]({p['path']})" in card
    assert (v1 / "report.html").is_file() and len(manifest["plots"]) == 4
    cost = manifest["cost"]
    assert cost["output_tokens"] == manifest["run_stats"]["tokens_out"]
    assert cost["prompt_tokens"] == sum(r["prompt_tokens"] for r in all_rows) > 0
    assert cost["run"]["engine_hours"] > 0 and cost["run"]["device"] == "cpu"


def test_verdicts_recomputed_by_a_reader(vllm_store: Path) -> None:
    rows = _load(vllm_store / "it" / "v1", "all")
    for r in rows:
        math_verdict = next(v for v in r["verdicts"] if v["name"] == "math")
        if r["finish_reason"] == "length":
            assert not r["accepted"] and r["reject_reason"] == "truncation:truncated"
        if r["extracted_answer"] is None:
            assert math_verdict["passed"] is not True
            continue
        gold, ans = parse(r["reference"]), parse(r["extracted_answer"])
        if math_verdict["passed"] is True:
            assert verify(gold, ans), r
        elif math_verdict["passed"] is False and gold and ans:
            # A reader's plain math-verify may be more generous (that is why factory guards it),
            # but never reports a rejected answer as a *different* verdict on exact numbers.
            if str(r["extracted_answer"]).strip().lstrip("-").isdigit() and r["reference"].isdigit():
                assert not verify(gold, ans), r
        if r["accepted"]:
            assert math_verdict["passed"] is True and r["finish_reason"] == "stop"
        # Each piece of text once: a think block only where the teacher wrote one (SmolLM2 does not).
        content = r["messages"][-1]["content"]
        if r["reasoning"]:
            assert content.startswith("<think>\n") and content.count(r["reasoning"]) == 1
        else:
            assert content == r["completion"].strip() and not is_doubled(content)


def test_default_rows_are_proven_equal(vllm_store: Path) -> None:
    for r in _load(vllm_store / "it" / "v1", "default"):
        assert verify(parse(r["reference"]), parse(r["extracted_answer"])), r
        assert 0 < r["pass_rate"] <= 1


def test_sigkill_then_resume_gives_exactly_once_and_v2(vllm_store: Path) -> None:
    """Kill the driver mid-run, run the same command again: the same keys, none twice; v1 untouched.

    The killed run has its replica on Ray (a cluster's case: its processes are out of the driver's
    reach); the resumed one on the local backend, this machine's default: the backend is not part
    of what decides the data, so the run resumes across it.
    """
    v1 = vllm_store / "it" / "v1"
    before = {p: p.read_bytes() for p in v1.rglob("*") if p.is_file()}
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # More prompts than the first run's, so the kill lands with shards still to do; a part per shard,
    # so the kill lands between parts. Early abort on, with thresholds low enough to fire in 96
    # tokens: an aborted sample is a committed row like any other, so the resume neither loses nor
    # repeats it.
    extra = ("source.limit=12", "run.part_seconds=0",
             "sampling.early_abort={every_tokens: 8, repetition: {tail_min_chars: 40, tail_min_repeats: 3}}")
    proc = subprocess.Popen(factory_cmd(vllm_store, *extra, "run.backend=ray"), cwd=ROOT, env=env,
                            start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = vllm_store / "it" / ".runs"
    first = _first_run(vllm_store)
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline and proc.poll() is None:
        # wait until the new run has committed at least one part, then kill it mid-run
        if any(p.parent.parent.name != first for p in runs.glob("*/parts/part-*.parquet")):
            break
        time.sleep(0.5)
    assert proc.poll() is None, "the run ended before it could be killed; raise source.limit"
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and everything it started
    proc.wait()
    _reap_ray()
    # Ray's workers lead groups of their own, out of the driver's reach, and `ray stop` kills Ray's
    # processes, not vLLM's: the replica's group guard must take its engine core and workers down.
    deadline = time.monotonic() + 30
    while any(alive(p) for p in pids_named("VLLM::")) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not [p for p in pids_named("VLLM::") if alive(p)], "the killed run's vLLM engine outlived it"
    run_dir = next(d for d in runs.glob("*") if d.name != first)
    committed = {p.name: p.read_bytes() for p in (run_dir / "parts").glob("part-*.parquet")}
    assert committed
    result = run_factory(vllm_store, *extra)
    assert result.returncode == 0, result.stderr[-5000:]
    v2 = vllm_store / "it" / "v2"
    rows = _load(v2, "all")
    keys = [(r["prompt_id"], r["sample_index"]) for r in rows]
    assert len(keys) == len(set(keys)) == 12 * 2
    for r in rows:
        if r["finish_reason"] == "abort":
            assert r["reject_reason"] == "repetition:aborted" and 0 < r["num_tokens"] < 96
    assert "resumed" in result.stdout
    assert json.loads((v2 / "manifest.json").read_text())["teacher"]["backend"] == "local"
    # completed work was not redone: the parts committed before the kill are untouched
    assert {n: (run_dir / "parts" / n).read_bytes() for n in committed} == committed
    assert before == {p: p.read_bytes() for p in v1.rglob("*") if p.is_file()}
    assert [v.version for v in list_versions(vllm_store / "it")] == ["v1", "v2"]


def _first_run(store: Path) -> str:
    return json.loads((store / "it" / "v1" / "manifest.json").read_text())["run_id"]


def _reap_ray() -> None:
    # A SIGKILLed driver cannot stop the local Ray it started; stop it as `ray stop --force` would,
    # but only this session's Ray (another Ray on the machine is someone else's).
    kill_our_ray()


def test_prompt_longer_than_the_context_is_a_row_not_a_crash() -> None:
    """The vLLM engine turns an over-long prompt into an error row before it reaches vLLM."""
    import asyncio

    from transformers import AutoTokenizer

    from factory.engines.vllm import VLLMEngine
    from factory.engines.models import resolve_model
    from factory.types import Prompt

    teacher = {"model": "builtin:smollm2-135m-instruct", "max_model_len": 32}
    engine = VLLMEngine(teacher, {"seed": 0, "temperature": 0.6, "top_p": 0.95, "max_tokens": 8})
    engine._tokenizer = AutoTokenizer.from_pretrained(resolve_model(teacher["model"]))
    long = Prompt("p", 0, "word " * 100, "1", [{"role": "user", "content": "word " * 100}], "test")

    async def run() -> list:
        return [c async for c in engine.generate([(long, 0), (long, 1)])]

    out = asyncio.run(run())
    assert [c.finish_reason for c in out] == ["error", "error"]
    assert all(c.error.startswith("prompt_too_long:") and c.prompt_tokens > 32 for c in out)


def test_default_run_prints_only_factory_output(vllm_store: Path) -> None:
    """vLLM's warnings, Ray, Triton, torch, the engine core's shutdown and the resource tracker go
    to the run's factory.log; the terminal holds the summary, the version and the log's path."""
    out = (vllm_store / "terminal.stdout").read_text().splitlines()
    err = (vllm_store / "terminal.stderr").read_text().splitlines()
    table = set("┏┃┡│└━┳╇┩┓┗┛┻ ")
    for line in out:
        assert (not line.strip() or line.startswith(("version: ", "load it: ", "look at it: ")) or line[0] in table
                or line.strip().startswith("it v1")), f"not factory's: {line!r}"
    assert any(line.startswith("version: ") for line in out)
    logs = [line for line in err if line.startswith("log: ")]
    assert len(logs) == 1 and all(line.startswith(("log: ", "generate: ")) for line in err), err
    log = Path(logs[0].split()[1])
    assert log.name == "factory.log" and log.parent.parent.name == ".runs"
    assert "vllm" in log.read_text().lower()  # redirected, not silenced
