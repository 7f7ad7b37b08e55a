"""`factory generate --dry-run`: the input checked and measured with the teacher's real tokenizer
(SmolLM2, converted once into ~/.cache/factory/models), the resolved config printed, no engine
started and nothing written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _dry(tmp_path: Path, src: Path, *sets: str) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "factory.cli", "generate", str(REPO / "configs/default.yaml"), "--dry-run",
            "--set", "source.builtin=null", "--set", f"source.path={src}", "--set", f"output.store={tmp_path / 'store'}",
            "--set", "teacher.max_model_len=64", "--set", "sampling.max_tokens=16", "--set", "prefilter=null"]
    for s in sets:
        args += ["--set", s]
    env = dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="200")
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_dry_run_reports_rejects_and_lengths_and_starts_nothing(tmp_path: Path) -> None:
    src = tmp_path / "p.jsonl"
    rows = [json.dumps({"problem": f"What is {i} + {i}?", "answer": str(2 * i)}).encode() for i in range(6)]
    rows.append(json.dumps({"problem": "Sum these: " + " + ".join(["7"] * 80), "answer": "560"}).encode())
    rows.append(json.dumps({"problem": "What is 1 + 1?"}).encode())  # no reference: math cannot judge it
    rows.append('{"problem": "Combien font 2 + 2 ?", "answer": "4", "note": "é"}'.encode("latin-1"))
    src.write_bytes(b"\n".join(rows) + b"\n")

    proc = _dry(tmp_path, src)
    assert proc.returncode == 2, proc.stderr  # 2 of 9 rejected: more than 1%, a run would stop
    out = proc.stdout
    assert "resolved config" in out and "max_model_len: 64" in out
    assert f"missing_reference (first at {src}:8)" in out and f"not_utf8 (first at {src}:9)" in out
    assert "a run would stop here" in out and "Traceback" not in proc.stderr
    assert not (tmp_path / "store").exists()  # nothing written

    proc = _dry(tmp_path, src, "source.max_rejected_fraction=0.5")
    assert proc.returncode == 0, proc.stderr
    lines = {ln.split("│")[1].strip(): ln.split("│")[2].strip() for ln in proc.stdout.splitlines() if ln.count("│") == 3}
    assert lines["prompts to generate"] == "7"
    assert lines["longer than teacher.max_model_len (64)"] == "1"  # the 80-term sum
    assert int(lines["longest prompt (tokens)"]) > 64
    assert "no engine started, nothing written" in proc.stdout
