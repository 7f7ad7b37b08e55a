"""Early abort with the real vLLM engine: a sample that loops is stopped inside the engine and
kept in `all` with its partial text, its tokens and the detector's reason.

The loop is forced: greedy decoding of a prompt that asks for one line over and over (SmolLM2
numbers the lines: "1. I like apples.", "2. I like apples.", ...), and word bigrams with a low bar,
so a few lines qualify. One engine start, a few
seconds of generation.
"""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

from factory.degeneration import RepetitionRule

from .conftest import run_factory

pytestmark = pytest.mark.integration

RULE = {"tail_min_chars": 40, "tail_min_repeats": 3, "ngram": 2, "min_ngrams": 20, "max_duplicate_ratio": 0.3}


def test_looping_sample_is_aborted_and_recorded(tmp_path: Path) -> None:
    src = tmp_path / "loop.jsonl"
    src.write_text(json.dumps({"problem": "Write the line 'I like apples.' 100 times, one per line.",
                               "answer": "0"}) + "\n")
    store = tmp_path / "store"
    proc = run_factory(
        store, f"source.path={src}", "source.builtin=null", "source.limit=1", "sampling.n=2",
        "sampling.temperature=0", "sampling.max_tokens=200",
        f"sampling.early_abort={json.dumps({'every_tokens': 8, 'repetition': RULE})}",
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    vdir = store / "it" / "v1"
    rows = datasets.load_dataset(str(vdir), "all", split="train")
    assert len(rows) == 2  # both samples are rows; an aborted sample is never retried as lost
    for r in rows:
        assert r["finish_reason"] == "abort", r["completion"]
        assert r["reject_reason"] == "repetition:aborted" and not r["accepted"]
        assert r["verdicts"][0] == {"name": "repetition", "passed": False, "reason": "aborted"}
        # stopped at a check (every 8 tokens), well before max_tokens, with its partial text
        assert 8 <= r["num_tokens"] < 200 and r["completion"].strip()
        # the offline rule says the same of the text kept: online and offline verdicts agree
        assert RepetitionRule(**RULE).check(r["completion"]) is not None
    manifest = json.loads((vdir / "manifest.json").read_text())
    assert manifest["run_stats"]["tokens_out"] == sum(r["num_tokens"] for r in rows)
    assert manifest["counts"]["rejected_by_reason"] == {"repetition:aborted": 2}
