"""What an idle local Ray costs a CPU engine: wakeups and CPU time per process, read from /proc.

    python -m benchmarks.ray_wakeups [--seconds 20] [--settle 15]

Starts a local Ray as `factory generate` starts one (benchmarks/idle_ray.py: one idle actor),
waits `--settle` seconds past its start-up work, then counts every Ray thread's context switches
and CPU ticks over `--seconds`. On a 2-core machine each wakeup can preempt one of vLLM's two
compute threads; BENCHMARKS.md ("Saturation") explains why that matters more than CPU time.
Linux only (/proc).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

from benchmarks.common import idle_local_ray, record

SWITCHES = re.compile(r"(?:non)?voluntary_ctxt_switches:\s+(\d+)")
RAY_PROCESS = re.compile(r"ray::|/ray/|benchmarks\.idle_ray")


def process_name(cmdline: str) -> str:
    """'ray::Idle', 'raylet', 'gcs_server', or a Python daemon's script (or `-m` module) name."""
    args = cmdline.split("\0")
    module = next((b for a, b in zip(args[1:], args[2:]) if a == "-m"), None)
    script = module or next((a for a in args[1:] if a.endswith(".py")), None)
    return Path(script or args[0]).name or "?"


def snapshot() -> dict[tuple[int, int], tuple[str, int, int]]:
    """(pid, tid) -> (process name, context switches, CPU ticks) for every thread of Ray's processes."""
    out = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_text()
            if not RAY_PROCESS.search(cmdline):
                continue
            name = process_name(cmdline)
            for tid in os.listdir(f"/proc/{pid}/task"):
                status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
                stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
                fields = stat[stat.rindex(")") + 2:].split()
                out[(int(pid), int(tid))] = (name, sum(map(int, SWITCHES.findall(status))),
                                             int(fields[11]) + int(fields[12]))
        except OSError:  # a thread or process that ended between listing and reading
            continue
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/default.yaml")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--settle", type=float, default=15.0)
    args = ap.parse_args()
    hz = os.sysconf("SC_CLK_TCK")
    with idle_local_ray(args.config):
        time.sleep(args.settle)
        before = snapshot()
        time.sleep(args.seconds)
        after = snapshot()
    per: dict[str, list[float]] = {}
    for key, (name, switches, ticks) in after.items():
        if key in before:
            row = per.setdefault(name, [0.0, 0.0])
            row[0] += (switches - before[key][1]) / args.seconds
            row[1] += 100 * (ticks - before[key][2]) / hz / args.seconds
    print(f"{'process':<28}{'wakeups/s':>12}{'% of a core':>14}")
    for name, (wakeups, cpu) in sorted(per.items(), key=lambda kv: -kv[1][0]):
        print(f"{name:<28}{wakeups:12.1f}{cpu:14.2f}")
    total_wakeups, total_cpu = sum(w for w, _ in per.values()), sum(c for _, c in per.values())
    print(f"{'idle local Ray, in all':<28}{total_wakeups:12.1f}{total_cpu:14.2f}")
    record({"bench": "ray_wakeups", "seconds": args.seconds, "wakeups_per_s": round(total_wakeups, 1),
            "cpu_pct_of_core": round(total_cpu, 2),
            "per_process": {k: [round(w, 1), round(c, 2)] for k, (w, c) in per.items()}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
