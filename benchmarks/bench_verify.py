"""Math verification throughput: verifications per second per core, 1 worker vs N workers.

    python -m benchmarks.bench_verify [--pairs 350] [--workers N] [--repeat 2]

A realistic mix of (reference, answer) pairs -- integers, fractions vs decimals, radicals,
intervals, sets, polynomials, assignments, some wrong -- all distinct, so the verifier's cache
never answers. Worker start-up is excluded (the pool is warmed first); each round uses fresh pairs with the
same mix, and the best round counts. Prints a table, then one JSON line per measurement and
one for the ratio. On a shared machine the N-worker ratio is only as good as the idle cores.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time


from factory.types import Completion, Prompt, Trace
from factory.verifiers.math import MathParams, MathVerifier


def make_pairs(n: int, seed: int = 0) -> list[tuple[str, str, str]]:
    """(kind, reference, answer); about one in five is wrong."""
    rng = random.Random(seed)
    out: list[tuple[str, str, str]] = []
    kinds = ["integer", "fraction", "radical", "interval", "set", "polynomial", "assignment"]
    i = 0
    while len(out) < n:
        kind = kinds[i % len(kinds)]
        i += 1
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        wrong = rng.random() < 0.2
        d = 1 if wrong else 0
        if kind == "integer":
            ref, ans = str(a * b + i), str(a * b + i + d)
        elif kind == "fraction":
            ref, ans = f"\\frac{{{a}}}{{{b * 4}}}", f"{(a + d) / (b * 4):.12g}"
            if len(ans) > 10:  # non-terminating decimal: answer with a fraction instead
                ans = f"\\frac{{{2 * a + 2 * d}}}{{{8 * b}}}"
        elif kind == "radical":
            ref, ans = f"{a}\\sqrt{{{b}}}", f"\\sqrt{{{a * a * b + d}}}"
        elif kind == "interval":
            ref, ans = f"[{a}, {a + b})", f"[{a},{a + b + d})"
        elif kind == "set":
            ref, ans = f"\\{{{a}, {b}, {a + b}\\}}", f"\\{{{a + b}, {b}, {a + d}\\}}"
        elif kind == "polynomial":
            ref, ans = f"(x+{a})^2", f"x^2+{2 * a}x+{a * a + d}"
        else:
            ref, ans = f"{a}+\\sqrt{{{b}}}", f"x = \\sqrt{{{b}}} + {a + d}"
        out.append((kind, ref, ans))
    return out


def traces(pairs: list[tuple[str, str, str]]) -> list[Trace]:
    out = []
    for i, (_, ref, ans) in enumerate(pairs):
        p = Prompt(f"p{i}", i, "problem", ref, [{"role": "user", "content": "problem"}], "bench")
        c = Completion(f"p{i}", 0, f"\\boxed{{{ans}}}", "stop")
        out.append(Trace(p, c, "", c.text, False, False, extracted_answer=ans))
    return out


def measure(workers: int, rounds: list[list[tuple[str, str, str]]]) -> dict:
    v = MathVerifier(MathParams(workers=workers, timeout_s=10.0), {})
    try:
        # Off the clock: start every worker and let each warm its LaTeX parser on every kind
        # (antlr builds its prediction cache per process; the first parse of a shape is slow).
        warm = make_pairs(workers * 35, seed=10_000 + workers)
        v.verify_many(traces([p for p in warm if p[0] != "integer"]))
        best = float("inf")
        verdicts = []
        for pairs in rounds:
            # Fresh pairs each round: the workers' LaTeX parse cache must not answer either.
            start = time.perf_counter()
            verdicts = v.verify_many(traces(pairs))
            best = min(best, time.perf_counter() - start)
        pairs = rounds[-1]
        passed = sum(x.passed is True for x in verdicts)
        reasons: dict[str, int] = {}
        for x in verdicts:
            reasons[x.reason or ""] = reasons.get(x.reason or "", 0) + 1
        return {
            "bench": "verify_math",
            "workers": workers,
            "pairs": len(pairs),
            "seconds": round(best, 4),
            "per_s": round(len(pairs) / best, 1),
            "per_s_per_core": round(len(pairs) / best / workers, 1),
            "passed": passed,
            "reasons": reasons,
        }
    finally:
        v.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=350)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeat", type=int, default=2, help="rounds (distinct pairs); best is kept")
    args = ap.parse_args()
    rounds = [make_pairs(args.pairs, seed=r) for r in range(args.repeat)]
    rows = [measure(1, rounds)]
    if args.workers > 1:
        rows.append(measure(args.workers, rounds))
    print(f"{'workers':>8} {'pairs':>6} {'seconds':>8} {'per s':>8} {'per s/core':>11}  verdicts")
    for r in rows:
        print(f"{r['workers']:>8} {r['pairs']:>6} {r['seconds']:>8} {r['per_s']:>8} "
              f"{r['per_s_per_core']:>11}  {r['reasons']}")
    for r in rows:
        print(json.dumps(r, sort_keys=True))
    if len(rows) == 2:
        speedup = rows[0]["seconds"] / rows[1]["seconds"]
        print(json.dumps({"bench": "verify_math_speedup", "workers": args.workers,
                          "speedup": round(speedup, 2), "cores": os.cpu_count()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
