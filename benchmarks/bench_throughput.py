"""Saturation: factory generate's output tokens/s against raw vLLM's, in one run.

    python -m benchmarks.bench_throughput [--prompts 64] [--n 2] [--max-tokens 128] [--repeat 4] [--control]
                                          [--set KEY=VALUE ...]

Both sides: the same model, prompts, chat template, sampling parameters and engine settings, and
`ignore_eos` so every request generates exactly max_tokens (equal work). (a) is raw
`LLM.generate` over the whole list in one call, the ceiling; (b) is `factory generate` end to end
as configured (on a CPU machine: the local backend, one replica in the driver's process), async
engine, verification and durable Parquet writes; its clock runs from the first request sent to
the last part committed. Engine start-up is reported apart for both.

Each factory run is bracketed by two raw runs (raw, factory, raw, factory, ..., raw) and its ratio
is taken against their mean: a shared machine's speed drifts by several percent within minutes
(raw alone moved from 384 to 340 tokens/s in 25 minutes on the 2-core machine), more than the
effect being measured. The median of the `--repeat` ratios is the figure; their range is printed.
Four brackets by default: with two, one hour of the 2-core machine gave 0.90-0.91 and the next,
with four, 0.97 (0.963-1.015) for the same code.

A control, (c): `factory generate` again on the Ray backend (`run.backend=ray`: the replica is a
Ray actor, as on a cluster), after each factory run and bracketed the same way. c/a is the ratio a
Ray run gets on this machine; on a small CPU machine Ray's own daemons share the engine's cores
(benchmarks/ray_wakeups.py measures them). `--control` adds it.

Detectors on, never firing (`--detectors`): (b) runs with `sampling.early_abort` watching every
sample every 32 tokens with the default rules' full work (the tail check, the n-gram count) but
thresholds no text reaches (`tail_min_repeats` above any run, `max_duplicate_ratio: 1.0`), so every
request still generates max_tokens: what watching tokens costs the engine. The bench fails if a
sample was aborted anyway.

GPU variant (lent H100): pass `--set teacher.model=/path/to/dummy-model
--set teacher.engine_kwargs={load_format: dummy}` with the shapes from shared/gpu/make_models.py.
"""

from __future__ import annotations

import argparse
import sys

from benchmarks.common import factory_generate, json_lines, record, run


# The default rules, every 32 tokens, doing their full work on every check but unable to fire: no
# run is 100000 periods long, and a duplicate-n-gram share never exceeds 1.
WATCH_ONLY = "{every_tokens: 32, repetition: {tail_min_repeats: 100000, max_duplicate_ratio: 1.0}}"


def median(xs: list[float]) -> float:
    xs = sorted(xs)
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def bracketed(values: list[float], raws: list[float]) -> list[float]:
    """values[i] over the mean of the raw runs just before and just after it."""
    return [v / ((raws[i] + raws[i + 1]) / 2) for i, v in enumerate(values)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/default.yaml")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--n", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=4, help="factory runs, each between two raw runs")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--control", action="store_true", help="add (c), factory generate on the Ray backend")
    ap.add_argument("--detectors", action="store_true", help="(b) with early-abort detectors on, never firing")
    args = ap.parse_args()
    factory_only = [f"sampling.early_abort={WATCH_ONLY}"] if args.detectors else []
    shared = [f"source.limit={args.prompts}", f"sampling.n={args.n}", f"sampling.max_tokens={args.max_tokens}",
              "sampling.ignore_eos=true", *args.overrides]

    raw_cmd = [sys.executable, "-m", "benchmarks.raw_vllm", "--config", args.config]
    for s in shared:
        raw_cmd += ["--set", s]
    raws = [json_lines(run(raw_cmd).stdout)[-1]]
    runs, controls, teacher = [], [], {}
    for i in range(args.repeat):
        manifest = factory_generate(args.config, shared + factory_only, "bench-throughput")
        if args.detectors and manifest["counts"].get("finish_reason", {}).get("abort"):
            raise SystemExit("a detector fired in the never-firing variant: the throughput figure would be wrong")
        runs.append(manifest["run_stats"])
        teacher = manifest["teacher"]
        if args.control:
            controls.append(factory_generate(args.config, [*shared, "run.backend=ray"], "bench-throughput-ray")
                            ["run_stats"])
        raws.append(json_lines(run(raw_cmd).stdout)[-1])
        print(f"[{i + 1}/{args.repeat}] raw {raws[i]['tokens_per_s']:.1f} -> factory {runs[i]['tokens_per_s']:.1f}"
              + (f" (factory on Ray {controls[i]['tokens_per_s']:.1f})" if controls else "")
              + f" -> raw {raws[i + 1]['tokens_per_s']:.1f} output tok/s", flush=True)

    raw_tps = [r["tokens_per_s"] for r in raws]
    ratios = bracketed([st["tokens_per_s"] for st in runs], raw_tps)
    ratio, st, raw = median(ratios), runs[-1], raws[-1]
    backend = teacher.get("backend", "ray")
    print(f"raw vLLM        {median(raw_tps):10.1f} output tok/s  (median of {len(raws)}; {raw['tokens_out']} tokens, "
          f"{raw['generation_s']:.1f} s; engine ready {raw['engine_ready_s']:.1f} s)")
    print(f"factory generate{median([r['tokens_per_s'] for r in runs]):10.1f} output tok/s  ({backend} backend; "
          f"median of {len(runs)}; "
          f"{st['tokens_out']} tokens, {st['generation_s']:.1f} s; engine ready {st['engine_ready_s']:.1f} s, "
          f"first verified trace {st.get('first_verified_s')} s, first accepted {st['first_accept_s']} s; "
          f"tail after the last completion {st.get('tail_s')} s)")
    print(f"ratio factory{' (detectors on, never firing)' if args.detectors else ''}/raw = {ratio:.3f}  (median of {len(ratios)}, each against the raw runs around it; "
          f"range {min(ratios):.3f}-{max(ratios):.3f})")
    extra = {}
    if controls:
        on_ray = bracketed([c["tokens_per_s"] for c in controls], raw_tps)
        vs = [r["tokens_per_s"] / c["tokens_per_s"] for r, c in zip(runs, controls)]
        print(f"factory on the Ray backend: ratio {median(on_ray):.3f} (range {min(on_ray):.3f}-{max(on_ray):.3f}; "
              f"engine ready {controls[-1]['engine_ready_s']:.1f} s); {backend} backend / Ray backend = {median(vs):.3f}")
        extra = {"ray_backend_tokens_per_s": [c["tokens_per_s"] for c in controls],
                 "ray_backend_ratio": round(median(on_ray), 4), "ray_backend_ratios": [round(r, 4) for r in on_ray],
                 "backend_vs_ray_backend": round(median(vs), 4)}
    record({"bench": "throughput", "prompts": args.prompts, "n": args.n, "max_tokens": args.max_tokens,
            "raw_tokens_per_s": raw_tps, "factory_tokens_per_s": [r["tokens_per_s"] for r in runs],
            "ratio": round(ratio, 4), "ratios": [round(r, 4) for r in ratios],
            "raw_engine_ready_s": raw["engine_ready_s"], "factory_engine_ready_s": st["engine_ready_s"],
            "factory_first_accept_s": st["first_accept_s"], "factory_first_verified_s": st.get("first_verified_s"),
            "factory_tail_s": st.get("tail_s"), "device": teacher.get("device"), "dtype": teacher.get("dtype"),
            "backend": backend, "detectors": args.detectors,
            "overrides": args.overrides, **extra})
    return 0


if __name__ == "__main__":
    sys.exit(main())
