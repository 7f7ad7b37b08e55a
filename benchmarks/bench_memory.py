"""Driver memory as the prompt set grows: peak RSS of `factory generate` at N and 10N prompts.

    python benchmarks/bench_memory.py [--prompts 2000]

Uses the scripted engine (answers from a table): the driver's memory does not depend on which
engine runs in the replicas, and this keeps the benchmark about the driver alone.
Reports the peak RSS (ru_maxrss of the driver process) for both sizes and the growth.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BENCH_DIR, ROOT, record  # noqa: E402

CHILD = r"""
import json, resource, sys
from factory.config import load_config
from factory.runner.driver import generate
cfg = load_config(None, data=json.loads(sys.argv[1]))
generate(cfg)
print(json.dumps({"maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def peak_rss(prompts: int, workdir: Path) -> float:
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
    return json.loads(proc.stdout.strip().splitlines()[-1])["maxrss_mb"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=2000)
    args = ap.parse_args()
    BENCH_DIR.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=BENCH_DIR) as tmp:
        small = peak_rss(args.prompts, Path(tmp))
        large = peak_rss(10 * args.prompts, Path(tmp))
    print(f"driver peak RSS: {small:.0f} MB at {args.prompts} prompts, {large:.0f} MB at {10 * args.prompts} "
          f"prompts (growth {large - small:.0f} MB, x{large / small:.2f})")
    record({"bench": "driver_memory", "prompts_small": args.prompts, "prompts_large": 10 * args.prompts,
            "rss_small_mb": round(small, 1), "rss_large_mb": round(large, 1),
            "growth_mb": round(large - small, 1), "growth_ratio": round(large / small, 3)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
