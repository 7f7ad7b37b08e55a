"""Adaptive sampling: output tokens spent per accepted trace, with and without
`sampling.stop_after_accepted`, on the embedded default set with the real engine.

    python -m benchmarks.bench_adaptive [--prompts 64] [--n 4] [--k 1]

Without: n samples of every prompt. With: rounds of one sample, a prompt stops at its k-th
accepted trace. Reports tokens per accepted trace and tokens per solved prompt (a prompt with at
least one accepted trace) for both. With k=1 the first can rise (easy prompts no longer yield
several accepted traces) while the second falls: say which one your dataset needs.
"""

from __future__ import annotations

import argparse
import sys

from benchmarks.common import factory_generate, record


def tokens_per_accepted(m: dict) -> tuple[float, int, int]:
    tokens, accepted = m["run_stats"]["tokens_out"], m["counts"]["accepted"]
    return (tokens / accepted if accepted else float("inf")), tokens, accepted


def _solved(m: dict) -> int:
    """Prompts with at least one accepted trace, counted from the version's own rows."""
    import pyarrow.parquet as pq
    from pathlib import Path as P

    vdir = P(m["_version_dir"])
    ids = set()
    for f in (vdir / "data" / "default").glob("*.parquet"):
        ids.update(pq.read_table(f, columns=["prompt_id"]).column(0).to_pylist())
    return len(ids)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/default.yaml")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--k", type=int, default=1)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    base = [f"source.limit={args.prompts}", f"sampling.n={args.n}", *args.overrides]
    full = factory_generate(args.config, base, "bench-adaptive-off")
    adaptive = factory_generate(args.config, base + [f"sampling.stop_after_accepted={args.k}",
                                                    "sampling.round_size=1"], "bench-adaptive-on")
    (tpa_off, tok_off, acc_off), (tpa_on, tok_on, acc_on) = tokens_per_accepted(full), tokens_per_accepted(adaptive)
    solved_off, solved_on = _solved(full), _solved(adaptive)
    saving = 1 - tpa_on / tpa_off
    print(f"n={args.n}, all samples:        {tok_off} tokens, {acc_off} accepted, {tpa_off:.1f} tokens/accepted")
    print(f"stop_after_accepted={args.k}:      {tok_on} tokens, {acc_on} accepted, {tpa_on:.1f} tokens/accepted")
    tps_off, tps_on = tok_off / max(solved_off, 1), tok_on / max(solved_on, 1)
    # Signed changes, so that a cost is never printed as a saving: k=1 stops easy prompts at one
    # trace, which can raise tokens per accepted trace while it lowers tokens per solved prompt.
    print(f"tokens per accepted trace: {_change(tpa_off, tpa_on)}; total tokens: {_change(tok_off, tok_on)}")
    print(f"solved prompts: {solved_off} vs {solved_on}; tokens per solved prompt {tps_off:.1f} vs {tps_on:.1f} "
          f"({_change(tps_off, tps_on)})")
    record({"bench": "adaptive_sampling", "prompts": args.prompts, "n": args.n, "k": args.k,
            "tokens_off": tok_off, "accepted_off": acc_off, "tokens_per_accepted_off": round(tpa_off, 2),
            "tokens_on": tok_on, "accepted_on": acc_on, "tokens_per_accepted_on": round(tpa_on, 2),
            "saving": round(saving, 4), "solved_off": solved_off, "solved_on": solved_on,
            "tokens_per_solved_off": round(tok_off / max(solved_off, 1), 2),
            "tokens_per_solved_on": round(tok_on / max(solved_on, 1), 2)})
    return 0


def _change(before: float, after: float) -> str:
    return f"{100 * (after / before - 1):+.1f}% with adaptive sampling" if before else "n/a"


if __name__ == "__main__":
    sys.exit(main())
