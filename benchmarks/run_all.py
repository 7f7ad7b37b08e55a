"""`make bench`: every benchmark, one after the other, each printing its ratio in one run.

Results are appended to .bench/results.jsonl; BENCHMARKS.md records figures and machines.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
STEPS = [
    ["bench_throughput.py"],
    ["bench_throughput.py", "--detectors", "--repeat", "2"],
    ["bench_yield.py"],
    ["bench_adaptive.py"],
    ["bench_verify.py"],
    ["bench_sandbox.py"],
    ["bench_memory.py"],
    ["ray_wakeups.py"],
]


def main() -> int:
    failed = []
    for step in STEPS:
        print(f"\n=== {' '.join(step)}", flush=True)
        if subprocess.run([sys.executable, str(HERE / step[0]), *step[1:]], cwd=HERE.parent).returncode != 0:
            failed.append(step[0])
    if failed:
        print(f"failed: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
