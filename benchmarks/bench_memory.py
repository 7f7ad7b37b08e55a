"""Driver memory as the prompt set grows: peak RSS of `factory generate` at N and 10N prompts.

    python -m benchmarks.bench_memory [--prompts 2000] [--bound-mb-per-1k 6]

Uses the scripted engine (answers from a table): the driver's memory does not depend on which
engine runs in the replicas, and this keeps the benchmark about the driver alone.
Reports, per size, the peak RSS (ru_maxrss of the driver process) before the version build
starts (prompts, shards, generation) and at the end (the build included), and Arrow's peak
allocation; then the growth from N to 10N prompts in MB per 1,000 prompts, checked against the
stated bound (exit status 1 if over).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import BENCH_DIR, ROOT, record

# Growth of the driver's peak RSS allowed per 1,000 more prompts, from 2,000 to 20,000 prompts
# (n=4, scripted engine; BENCHMARKS.md, driver memory). Measured 4.5-4.9: the prompt set (~1.6 KB a
# prompt), plus the version build's row groups, which grow to their 32 MiB cap in this step and no
# further. Reading the whole run into one table, as the build once did, measured 14.2.
BOUND_MB_PER_1K = 6.0

CHILD = r"""
import json, resource, sys
import pyarrow as pa
from factory.config import load_config
from factory.runner.driver import generate
from factory.store import version


def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


build, seen = version.build_version, {}


def measured_build(*args, **kwargs):
    seen["before_build_mb"] = peak_mb()  # the high-water mark of everything before the build
    return build(*args, **kwargs)


version.build_version = measured_build  # the driver imports it at call time
generate(load_config(None, data=json.loads(sys.argv[1])))
print(json.dumps({"maxrss_mb": peak_mb(), "before_build_mb": seen["before_build_mb"],
                  "arrow_peak_mb": pa.default_memory_pool().max_memory() / 2**20}))
"""


def measure(prompts: int, workdir: Path) -> dict[str, float]:
    src = workdir / f"p{prompts}.jsonl"
    with src.open("w") as f:
        for i in range(prompts):
            f.write(json.dumps({"problem": f"Problem {i}: what is {i} + {i + 1}? " + "word " * 40,
                                "answer": str(2 * i + 1)}) + "\n")
    cfg = {
        "source": {"path": str(src)},
        "prefilter": None,
        "teacher": {"engine": "scripted", "engine_kwargs": {"default": "Adding them. \\boxed{1}"}},
        "sampling": {"n": 4, "max_tokens": 64},
        "verifiers": [{"name": "truncation"}, {"name": "math"}],
        "run": {"shard_size": 64, "progress": False},
        "output": {"store": str(workdir / "store"), "name": f"mem{prompts}"},
    }
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(cfg)], cwd=ROOT, capture_output=True, text=True,
                          timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-4000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=2000)
    ap.add_argument("--bound-mb-per-1k", type=float, default=BOUND_MB_PER_1K,
                    help="allowed growth of the driver's peak RSS, MB per 1,000 more prompts (n=4)")
    args = ap.parse_args()
    sizes = [args.prompts, 10 * args.prompts]
    BENCH_DIR.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=BENCH_DIR) as tmp:
        runs = [measure(n, Path(tmp)) for n in sizes]
    for n, r in zip(sizes, runs):
        print(f"{n:>7} prompts: peak RSS {r['before_build_mb']:.0f} MB before the version build, "
              f"{r['maxrss_mb']:.0f} MB in all; Arrow peak {r['arrow_peak_mb']:.0f} MB")
    small, large = runs[0]["maxrss_mb"], runs[1]["maxrss_mb"]
    per_1k = (large - small) / ((sizes[1] - sizes[0]) / 1000)
    ok = per_1k <= args.bound_mb_per_1k
    print(f"driver peak RSS: {small:.0f} MB at {sizes[0]} prompts, {large:.0f} MB at {sizes[1]} prompts "
          f"(growth {large - small:.0f} MB, x{large / small:.2f}): {per_1k:.1f} MB per 1,000 prompts, "
          f"bound {args.bound_mb_per_1k:g}: {'PASS' if ok else 'FAIL'}")
    record({"bench": "driver_memory", "prompts_small": sizes[0], "prompts_large": sizes[1],
            "rss_small_mb": round(small, 1), "rss_large_mb": round(large, 1),
            "before_build_small_mb": round(runs[0]["before_build_mb"], 1),
            "before_build_large_mb": round(runs[1]["before_build_mb"], 1),
            "arrow_peak_small_mb": round(runs[0]["arrow_peak_mb"], 1),
            "arrow_peak_large_mb": round(runs[1]["arrow_peak_mb"], 1),
            "growth_mb": round(large - small, 1), "growth_ratio": round(large / small, 3),
            "growth_mb_per_1k_prompts": round(per_1k, 2), "bound_mb_per_1k_prompts": args.bound_mb_per_1k,
            "within_bound": ok})
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
