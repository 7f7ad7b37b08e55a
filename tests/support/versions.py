"""Test versions built straight from rows (factory.store.version.build_version, no engine), with
the awkward cases the report and the viewer must survive: HTML and script in the data, several
reject reasons, a version with no accepted row."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from factory.store.schema import PART_SCHEMA, trace_row
from factory.store.version import build_version
from factory.types import Completion, Prompt, Trace, Verdict

# Script that would change the page title if it ever ran; tests check that it never does.
PAYLOAD = "<script>document.title='PWNED'</script><img src=x onerror=\"document.title='PWNED'\">"
REASONS = [("math", "wrong_answer"), ("truncation", "truncated"), ("math", "no_answer")]
INFO: dict[str, Any] = {
    "config": {"output": {"store": "store", "name": "ds"},
               "prompt": {"system": "You are careful.", "template": "{problem}\n\nPut the answer in \\boxed{}."},
               "run": {"gpu_hour_price": 2.5}, "teacher": {"tensor_parallel_size": 1}},
    "fingerprint": "f" * 12,
    "seed": 0,
    "teacher": {"model": "tiny-teacher", "engine": "scripted", "device": "cpu", "replicas": 1},
    "verifiers": [{"name": "truncation", "version": "1", "params": {}},
                  {"name": "math", "version": "1", "params": {}}],
    "source": {"kind": "file", "name": "problems.jsonl", "content_sha256": "ab" * 32},
    "stats": {"prompts": 0, "tokens_in": 0, "tokens_out": 0, "wall_s": 7200.0, "generation_s": 7000.0},
    "run_id": "run-test",
    "sampling": {"n": 4, "max_tokens": 400},
}


def make_rows(prompts: int, n: int = 4, accept: bool = True, html_in: int | None = 0) -> list[dict[str, Any]]:
    """`prompts` problems x n samples. Prompt i has i % (n + 1) accepted samples (if `accept`);
    the rest fail with the reasons in turn. Prompt `html_in` carries PAYLOAD in its problem and
    completions."""
    rows = []
    for i in range(prompts):
        pid = f"p{i:05d}"
        text = f"What is {i} + {i}?" + (f" {PAYLOAD}" if i == html_in else "")
        p = Prompt(pid, i, text, str(2 * i), [{"role": "user", "content": text}], "test:browser", {})
        for s in range(n):
            ok = accept and s < i % (n + 1)
            verifier, reason = REASONS[(i + s) % len(REASONS)]
            answer = str(2 * i) if ok else str(2 * i + 1)
            body = f"Adding {i} and {i}." + (f" {PAYLOAD}" if i == html_in else "")
            finish = "length" if not ok and verifier == "truncation" else "stop"
            c = Completion(pid, s, f"<think>{body}</think>\n\\boxed{{{answer}}}", finish,
                           prompt_tokens=20 + i % 7, num_tokens=40 + 37 * ((i * 7 + s * 13) % 11))
            t = Trace(p, c, body, f"\\boxed{{{answer}}}", True, True, answer)
            if ok:
                verdicts = [Verdict("truncation", True), Verdict("math", True)]
            elif verifier == "truncation":
                verdicts = [Verdict("truncation", False, reason), Verdict("math", False, "wrong_answer")]
            else:
                verdicts = [Verdict("truncation", True), Verdict("math", False, reason)]
            rows.append(trace_row(t, verdicts))
    return rows


def build(dataset_dir: Path, rows: list[dict[str, Any]], parent: Path | None = None) -> Path:
    return build_version(dataset_dir, pa.Table.from_pylist(rows, schema=PART_SCHEMA), INFO, parent=parent)
