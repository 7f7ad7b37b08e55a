"""Yield: solved problems per engine-hour, factory against the plain way, in one run.

    python -m benchmarks.bench_yield [--prompts 64] [--slots 16] [--n 4] [--max-tokens 1024] [--repeat 2]
                                     [--round-size 1] [--every 32] [--set KEY=VALUE ...]

Same problems, teacher, sampling and machine on both sides, at a budget where the embedded teacher
loops (max_tokens 1024):

- (a) the plain way, as open-r1 built OpenR1-Math-220k (benchmarks/plain_way.py): raw vLLM
  `LLM.generate` with n samples per problem in one call, then the config's verifiers (truncation +
  math-verify) over every completion; its clock is generation + verification.
- (b) `factory generate` with its best settings: adaptive sampling (`stop_after_accepted: 1`,
  rounds of `--round-size` samples, at most n, one prompt per shard so each prompt's next round
  goes out as soon as its own samples are verified, and idle slots filled by asking ahead,
  `run.sample_ahead`), early abort of looping samples (`sampling.early_abort`), the engine
  settings of the config (the same as (a)'s). Its clock runs from the first request to the last
  committed part (verification overlaps generation).

Both sides get `--slots` engine slots (teacher.max_num_seqs, default 16) for n x prompts samples:
a dataset run has many more samples than slots, and on the 2-core CPU 16 slots also ran faster
than 128 (BENCHMARKS.md). With more slots than samples the plain way's one call is a single
batch, and the comparison says more about the drain of one batch than about a run.

Engine start is outside both clocks (reported apart). A solved problem has at least one verified
trace. Printed for both: solved problems and verified traces per engine-hour, output tokens per
solved problem, the share of output tokens spent in aborted samples, and false aborts: (a) runs with
abort off and the detectors are replayed offline over every completion at the points the engine
would have checked it; an accepted trace they would have cut is a false abort.

Each (b) run is bracketed by two (a) runs (a, b, a, b, a) and its ratio taken against their mean,
as bench_throughput.py does: the shared machine's speed drifts by more than the effects measured.
The figure is the median ratio b/a of solved problems per engine-hour; (b) must also solve at least
97% of the problems (a) solves (speed bought by losing problems does not count).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.common import factory_generate, json_lines, record, run

HOUR = 3600.0


def median(xs: list[float]) -> float:
    xs = sorted(xs)
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def factory_figures(m: dict[str, Any]) -> dict[str, Any]:
    """Solved problems, verified traces, tokens and aborted tokens, from the version's own rows."""
    import pyarrow.parquet as pq

    vdir = Path(m["_version_dir"])
    rows: list[dict[str, Any]] = []
    for f in sorted((vdir / "data" / "all").glob("*.parquet")):
        rows += pq.read_table(f, columns=["prompt_id", "accepted", "finish_reason", "num_tokens"]).to_pylist()
    st = m["run_stats"]
    return {"seconds": st["generation_s"], "tokens_out": sum(r["num_tokens"] for r in rows),
            "accepted": sum(r["accepted"] for r in rows), "samples": len(rows),
            "solved_ids": sorted({r["prompt_id"] for r in rows if r["accepted"]}),
            "aborted": sum(r["finish_reason"] == "abort" for r in rows),
            "aborted_tokens": sum(r["num_tokens"] for r in rows if r["finish_reason"] == "abort"),
            "length_finished": sum(r["finish_reason"] == "length" for r in rows),
            "engine_ready_s": st["engine_ready_s"], "asked_ahead": st.get("asked_ahead", 0)}


def plain_figures(r: dict[str, Any]) -> dict[str, Any]:
    return {"seconds": r["generation_s"] + r["verify_s"], "tokens_out": r["tokens_out"], "accepted": r["accepted"],
            "samples": r["prompts"] * r["n"], "solved_ids": r["solved_ids"], "aborted": 0, "aborted_tokens": 0,
            "length_finished": r["length_finished"], "engine_ready_s": r["engine_ready_s"],
            "false_aborts": r.get("false_aborts"), "replay_would_cut": r.get("replay_would_cut"),
            "verify_s": r["verify_s"]}


def per_hour(f: dict[str, Any]) -> tuple[float, float]:
    return len(f["solved_ids"]) * HOUR / f["seconds"], f["accepted"] * HOUR / f["seconds"]


def line(name: str, f: dict[str, Any]) -> str:
    solved_h, traces_h = per_hour(f)
    solved = len(f["solved_ids"])
    tps = f["tokens_out"] / solved if solved else float("inf")
    share = f["aborted_tokens"] / f["tokens_out"] if f["tokens_out"] else 0.0
    return (f"{name}: {solved} solved, {f['accepted']} verified traces of {f['samples']} samples in "
            f"{f['seconds']:.1f} s -> {solved_h:,.0f} solved/engine-h, {traces_h:,.0f} traces/engine-h; "
            f"{tps:,.0f} output tokens per solved problem; {share:.1%} of tokens in aborted samples "
            f"({f['aborted']} aborted, {f['length_finished']} hit max_tokens)"
            + (f"; {f['asked_ahead']} samples asked ahead of their verdict" if f.get("asked_ahead") else ""))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/default.yaml")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--slots", type=int, default=16,
                    help="teacher.max_num_seqs on both sides: fewer engine slots than samples, as in a dataset run")
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=2, help="factory runs, each between two plain-way runs")
    ap.add_argument("--round-size", type=int, default=1, help="(b): samples per round of adaptive sampling")
    ap.add_argument("--every", type=int, default=32, help="(b): early_abort.every_tokens")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="both sides")
    ap.add_argument("--factory-set", dest="factory_overrides", action="append", default=[], help="(b) only")
    args = ap.parse_args()
    shared = [f"source.limit={args.prompts}", f"teacher.max_num_seqs={args.slots}", f"sampling.n={args.n}",
              f"sampling.max_tokens={args.max_tokens}",
              f"teacher.max_model_len={args.max_tokens + 256}", *args.overrides]
    early_abort = {"every_tokens": args.every, "repetition": {}}
    # One prompt per shard: a prompt's next round goes out as soon as its own samples are verified,
    # not when the slowest sample of its shard is done.
    best = [*shared, "sampling.stop_after_accepted=1", f"sampling.round_size={args.round_size}", "run.shard_size=1",
            f"sampling.early_abort={json.dumps(early_abort)}", *args.factory_overrides]

    plain_cmd = [sys.executable, "-m", "benchmarks.plain_way", "--config", args.config, "--replay", json.dumps(early_abort)]
    for s in shared:
        plain_cmd += ["--set", s]
    plains = [plain_figures(json_lines(run(plain_cmd).stdout)[-1])]
    print(line("plain  ", plains[-1]), flush=True)  # each run as it ends: a cut-short bench still says something
    runs: list[dict[str, Any]] = []
    for i in range(args.repeat):
        runs.append(factory_figures(factory_generate(args.config, best, "bench-yield")))
        print(line("factory", runs[-1]), flush=True)
        plains.append(plain_figures(json_lines(run(plain_cmd).stdout)[-1]))
        print(line("plain  ", plains[-1]), flush=True)
        print(f"[{i + 1}/{args.repeat}] plain {per_hour(plains[i])[0]:,.0f} -> factory {per_hour(runs[i])[0]:,.0f} "
              f"-> plain {per_hour(plains[i + 1])[0]:,.0f} solved problems per engine-hour", flush=True)

    ratios, kept = [], []
    for i, f in enumerate(runs):
        around = (per_hour(plains[i])[0] + per_hour(plains[i + 1])[0]) / 2
        ratios.append(per_hour(f)[0] / around)
        # (b) must solve >= 97% of what (a) solves: against the mean of the two plain runs around it
        kept.append(len(f["solved_ids"]) / ((len(plains[i]["solved_ids"]) + len(plains[i + 1]["solved_ids"])) / 2))
    false_aborts = sum(p["false_aborts"] or 0 for p in plains)
    print(line("(a) plain way  ", plains[-1]) + f"; verification {plains[-1]['verify_s']:.1f} s of it")
    print(line("(b) factory    ", runs[-1]))
    print(f"false aborts: {false_aborts} accepted traces of the plain runs would have been cut "
          f"(the detectors would have cut {sum(p['replay_would_cut'] or 0 for p in plains)} samples in all)")
    print(f"(b) solves {median(kept):.1%} of the problems (a) solves (median; range {min(kept):.1%}-{max(kept):.1%})")
    print(f"ratio b/a of solved problems per engine-hour = {median(ratios):.3f}  (median of {len(ratios)}, "
          f"each against the plain runs around it; range {min(ratios):.3f}-{max(ratios):.3f})")
    record({"bench": "yield", "prompts": args.prompts, "slots": args.slots, "n": args.n, "max_tokens": args.max_tokens,
            "round_size": args.round_size, "every_tokens": args.every, "ratio": round(median(ratios), 4),
            "ratios": [round(r, 4) for r in ratios], "solved_share": [round(k, 4) for k in kept],
            "false_aborts": false_aborts,
            "plain": [{k: v for k, v in p.items() if k != "solved_ids"} | {"solved": len(p["solved_ids"])}
                      for p in plains],
            "factory": [{k: v for k, v in f.items() if k != "solved_ids"} | {"solved": len(f["solved_ids"])}
                        for f in runs],
            "overrides": args.overrides, "factory_overrides": args.factory_overrides})
    return 0


if __name__ == "__main__":
    sys.exit(main())
