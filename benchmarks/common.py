"""Helpers shared by the benchmarks: run a command, read its JSON lines, run factory generate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / ".bench"


def json_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return out


def run(cmd: list[str], timeout: float = 3600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1", RAY_USAGE_STATS_ENABLED="0")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-6000:])
        raise SystemExit(f"benchmark step failed ({proc.returncode}): {' '.join(cmd)}")
    return proc


def factory_generate(config: str, overrides: list[str], name: str) -> dict[str, Any]:
    """Run `factory generate` in its own process; return the new version's manifest."""
    store = BENCH_DIR / "store"
    sets = [f"output.store={store}", f"output.name={name}", "run.progress=false", *overrides]
    cmd = [sys.executable, "-m", "factory.cli", "generate", config]
    for s in sets:
        cmd += ["--set", s]
    t0 = time.perf_counter()
    proc = run(cmd)
    wall = time.perf_counter() - t0
    version = next(line.split("version:")[1].split()[0] for line in proc.stdout.splitlines() if "version:" in line)
    manifest = json.loads((Path(version) / "manifest.json").read_text())
    manifest["_process_wall_s"] = wall
    manifest["_version_dir"] = version
    return manifest


def record(result: dict[str, Any]) -> None:
    """Print one JSON line and append it to .bench/results.jsonl."""
    BENCH_DIR.mkdir(exist_ok=True)
    line = json.dumps(result, sort_keys=True)
    print(line, flush=True)
    with (BENCH_DIR / "results.jsonl").open("a") as f:
        f.write(line + "\n")


@contextmanager
def idle_local_ray(config: str) -> Iterator[None]:
    """A local Ray, started as `factory generate` starts one, held idle for the block's duration."""
    holder = subprocess.Popen([sys.executable, "-m", "benchmarks.idle_ray", "--config", config], cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        if holder.stdout.readline().strip() != "ready":
            raise SystemExit("benchmarks/idle_ray.py did not start a local Ray")
        yield
    finally:
        holder.stdin.close()  # it shuts its Ray down and exits
        try:
            holder.wait(timeout=60)
        except subprocess.TimeoutExpired:
            holder.kill()
