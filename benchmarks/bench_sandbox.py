"""Sandbox throughput: tests per second for a trivial correct program (stdin -> stdout).

    python -m benchmarks.bench_sandbox [--runs 40] [--workers N]

Measures, in one run: a bare `python -c` subprocess (the floor: interpreter start), then each
isolation mode that works here (bubblewrap, rlimits), sequentially and with `workers` threads.
Prints one human line and one JSON line per measurement; ratios are against the bare floor.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor


from factory.sandbox import SandboxError, SandboxLimits, run_python, sandbox_details

PROGRAM = "a, b = map(int, input().split())\nprint(a + b)"
LIMITS = SandboxLimits(timeout_s=10, memory_mb=256, max_processes=8)


def bare(python: str) -> None:
    out = subprocess.run([python, "-I", "-B", "-c", PROGRAM], input=b"2 3\n", capture_output=True,
                         check=True).stdout
    assert out.strip() == b"5"


def sandboxed(mode: str) -> None:
    res = run_python(PROGRAM, "2 3\n", LIMITS, isolation=mode)
    assert res.status == "ok" and res.stdout.strip() == "5", res


def measure(fn, runs: int, workers: int) -> float:
    fn()  # warm: the first call probes the sandbox
    t0 = time.perf_counter()
    if workers == 1:
        for _ in range(runs):
            fn()
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda _: fn(), range(runs)))
    return runs / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()

    modes = []
    for mode in ("bubblewrap", "rlimits"):
        try:
            modes.append((mode, sandbox_details(mode)))
        except SandboxError as e:
            print(f"skip {mode}: {str(e).splitlines()[0]}")
    python = modes[0][1]["python"] if modes else sys.executable
    floor: dict[int, float] = {}
    for workers in sorted({1, args.workers}):
        floor[workers] = measure(lambda: bare(python), args.runs, workers)
        rows = [("bare-subprocess", floor[workers], None)]
        for mode, details in modes:
            rows.append((mode, measure(lambda m=mode: sandboxed(m), args.runs, workers), details))
        for name, rate, details in rows:
            ratio = rate / floor[workers]
            print(f"{name:16s} workers={workers:2d}  {rate:7.1f} tests/s  ({ratio:.2f}x bare)")
            print(json.dumps({"bench": "sandbox", "mode": name, "workers": workers, "runs": args.runs,
                              "tests_per_s": round(rate, 2), "ratio_vs_bare": round(ratio, 3),
                              "network": details and details["network"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
