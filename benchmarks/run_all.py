"""`make bench`: every benchmark, one after the other, each printing its ratio in one run.

Results are appended to .bench/results.jsonl; BENCHMARKS.md records figures and machines.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEPS = [  # modules of this package, each run as `python -m benchmarks.NAME`
    ["bench_throughput"],
    ["bench_throughput", "--detectors", "--repeat", "2"],
    ["bench_yield"],
    ["bench_adaptive"],
    ["bench_verify"],
    ["bench_sandbox"],
    ["bench_memory"],
    ["ray_wakeups"],
]


def main() -> int:
    failed = []
    for step in STEPS:
        print(f"\n=== {' '.join(step)}", flush=True)
        if subprocess.run([sys.executable, "-m", f"benchmarks.{step[0]}", *step[1:]], cwd=ROOT).returncode != 0:
            failed.append(step[0])
    if failed:
        print(f"failed: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
