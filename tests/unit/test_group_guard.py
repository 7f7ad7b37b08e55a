"""The guards take a replica's engine processes down with it, however the replica dies.

The group guard serves a Ray actor (it leads its own process group); the process guard serves a
replica in the driver's own process (local backend), which shares its group with its shell.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from factory.runner.backends.group_guard import arm_group_guard, descendants
from tests.support.procs import alive

ROOT = Path(__file__).resolve().parents[2]

# Stands in for a replica's process: arms a guard, starts a long-lived child (as vLLM starts its
# engine core), prints that child's pid, then waits. "group": a Ray actor, which leads its own
# group (the test starts it so); "process": a driver with a local replica, which names the
# engine's processes to its guard once they are up and does not lead a group.
_REPLICA = """
import subprocess, sys, time
from factory.runner.backends.group_guard import arm_group_guard, arm_process_guard, descendants
kind, mode = sys.argv[1:]
guard = arm_group_guard() if kind == "group" else arm_process_guard()
assert guard is not None
engine = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
if kind == "process":
    guard.watch([p for p in descendants() if p != guard.pid])
print(engine.pid, flush=True)
if mode == "disarm":
    guard.disarm()
    print("disarmed", flush=True)
time.sleep(300)
"""

KINDS = ["group", "process"]


def _replica(kind: str, mode: str) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-c", _REPLICA, kind, mode], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True, start_new_session=kind == "group", env=dict(os.environ, PYTHONPATH=str(ROOT)))
    return proc, int(proc.stdout.readline())


def _kill(*pids: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.parametrize("kind", KINDS)
def test_a_sigkilled_replica_takes_its_engine_processes_with_it(kind: str) -> None:
    proc, engine = _replica(kind, "armed")
    try:
        assert alive(engine)
        os.kill(proc.pid, signal.SIGKILL)  # nothing in the replica runs after this
        proc.wait()
        deadline = time.monotonic() + 10
        while alive(engine) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(engine), "the engine process outlived its replica"
    finally:
        _kill(proc.pid, engine)


@pytest.mark.parametrize("kind", KINDS)
def test_a_disarmed_guard_kills_nothing(kind: str) -> None:
    proc, engine = _replica(kind, "disarm")
    try:
        assert proc.stdout.readline().strip() == "disarmed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        time.sleep(1)
        assert alive(engine), "a disarmed guard fired"
    finally:
        _kill(proc.pid, engine)


def test_no_group_guard_where_the_process_does_not_lead_its_group() -> None:
    # pytest shares its group with whatever started it: arming here could kill that.
    if os.getpgid(0) == os.getpid():
        out = subprocess.run([sys.executable, "-c", "from factory.runner.backends.group_guard import arm_group_guard;"
                              "print(arm_group_guard())"], cwd=ROOT, capture_output=True, text=True,
                             env=dict(os.environ, PYTHONPATH=str(ROOT)))
        assert out.stdout.strip() == "None"
    else:
        assert arm_group_guard() is None


def test_descendants_are_found_below_children() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time; "
                              "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
                              "print(p.pid, flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        grandchild = int(child.stdout.readline())
        found = descendants()
        assert child.pid in found and grandchild in found
        assert found.index(child.pid) < found.index(grandchild)
    finally:
        _kill(child.pid, grandchild)
        child.wait()
